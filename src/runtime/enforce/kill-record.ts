/**
 * The syscall guard's event record (written by kill-prog.ts's programs,
 * forwarded in binary frames by native/membrane-syscall-guard.c): layout and decoding.
 * Pure; the bytes come from the kernel but are checked as if hostile (size,
 * hex, string bounds).
 *
 *   0 rule u32 | 4 flags u32 (bit 0: the signal was sent) | 8 pid (tgid) | 12 tid | 16 uid | 20 netns inode
 *   24 cgroup id u64 | 32 ktime (CLOCK_MONOTONIC ns) u64 | 40 comm[16] | 56 the six syscall arguments u64[6]
 *   104 string length s32 (with its NUL; <= 0: unreadable or none) | 112 string[STR_MAX]
 */

export const EVENT_SIZE = 368;
/** Bytes of the reported string (matching reads up to 4,095; events carry the first STR_MAX - 1). */
export const STR_MAX = 256;
export const REC = {
  rule: 0,
  flags: 4,
  pid: 8,
  tid: 12,
  uid: 16,
  netns: 20,
  cgroup: 24,
  ktime: 32,
  comm: 40,
  args: 56,
  strLen: 104,
  str: 112,
} as const;

export interface KillRecord {
  readonly rule: number;
  readonly signalled: boolean;
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  readonly netns: number;
  readonly cgroupId: string;
  readonly ktimeNs: bigint;
  /** Printable ASCII, other bytes as `\xNN`. */
  readonly comm: string;
  /** The six syscall arguments, as the caller's registers held them. */
  readonly args: readonly bigint[];
  /** The reported string (`\xNN` for bytes outside printable ASCII), cut at STR_MAX - 1 bytes; undefined when unreadable. */
  readonly str: string | undefined;
  readonly strTruncated: boolean;
}

/** Bytes up to the first NUL, printable ASCII kept and everything else (and `\`) as `\xNN`. */
export function printable(b: Buffer): string {
  const end = b.indexOf(0);
  const s = end < 0 ? b : b.subarray(0, end);
  let clean = true;
  for (const c of s) if (c < 0x20 || c >= 0x7f || c === 0x5c) clean = false;
  if (clean) return s.toString("latin1");
  let out = "";
  for (const c of s)
    out +=
      c >= 0x20 && c < 0x7f && c !== 0x5c ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, "0")}`;
  return out;
}

/** A record from its hex text; undefined when it is not one. */
export function decodeKillRecord(hex: string): KillRecord | undefined {
  if (hex.length !== EVENT_SIZE * 2 || !/^[0-9a-f]+$/.test(hex)) return undefined;
  return decodeKillRecordBytes(Buffer.from(hex, "hex"));
}

/** A record from its bytes (the loader's binary frames); undefined when it is not one. */
export function decodeKillRecordBytes(b: Buffer): KillRecord | undefined {
  if (b.length !== EVENT_SIZE) return undefined;
  const strLen = b.readInt32LE(REC.strLen);
  const args: bigint[] = [];
  for (let i = 0; i < 6; i++) args.push(b.readBigUInt64LE(REC.args + 8 * i));
  return {
    rule: b.readUInt32LE(REC.rule),
    signalled: (b.readUInt32LE(REC.flags) & 1) === 1,
    pid: b.readUInt32LE(REC.pid),
    tid: b.readUInt32LE(REC.tid),
    uid: b.readUInt32LE(REC.uid),
    netns: b.readUInt32LE(REC.netns),
    cgroupId: b.readBigUInt64LE(REC.cgroup).toString(),
    ktimeNs: b.readBigUInt64LE(REC.ktime),
    comm: printable(b.subarray(REC.comm, REC.comm + 16)),
    args,
    str: strLen > 0 ? printable(b.subarray(REC.str, REC.str + Math.min(strLen - 1, STR_MAX - 1))) : undefined,
    strTruncated: strLen > STR_MAX,
  };
}
