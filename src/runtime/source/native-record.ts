/**
 * The native event source's binary records and frames (pure; hostile input).
 *
 *   kernel programs (native-prog.ts) --fixed-size records--> BPF ring buffer
 *   loader (native/membrane-exec-events.c) --frames over a pipe--> FrameReader --> ProcessRecord
 *
 * A frame is `u32 type, u32 length, payload` (little-endian, as the host).
 * RECORDS frames carry whole records back to back; each record starts with
 * its kind, which fixes its size. Nothing in a frame is trusted: an unknown
 * type, a length over MAX_FRAME, a record of an unknown kind or cut short is
 * `malformed` (counted and dropped, the stream is then unreliable and the
 * source stops), never thrown.
 *
 * Bounds (Tetragon reads the same fields in its exec program and also cuts
 * them, flagging the cut): the binary's path at FILENAME_MAX - 1 bytes, the
 * arguments at ARGS_MAX bytes (`truncArgs` beyond), the cwd at CWD_MAX bytes
 * or CWD_DEPTH components (`errorCWD` beyond, as the bpftrace source).
 */
import type { ExecRecord, ProcessRecord } from "./assemble.js";

export const KIND_EXEC = 1;
export const KIND_FORK = 2;
export const KIND_EXIT = 3;

/** Fork and exit records. */
export const SMALL_SIZE = 32;
export const FILENAME_MAX = 256;
export const ARGS_MAX = 1024;
/** Bytes of cwd components (each a length byte then the name), innermost first. */
export const CWD_MAX = 256;
/** The cwd area: CWD_MAX plus one more component's room, so the verifier can bound each write alone. */
export const CWD_AREA = 512;
export const CWD_DEPTH = 24;

/** Byte offsets in a record. */
export const OFF = {
  kind: 0,
  pid: 4,
  ktime: 8,
  /** fork: the parent's tgid; exec: the real parent's tgid; exit: the exit code (wait status). */
  ppidOrCode: 16,
  uid: 20,
  auid: 24,
  netns: 28,
  cgroup: 32,
  startBoottime: 40,
  argBytes: 48,
  argLen: 56,
  argErr: 60,
  filenameLen: 64,
  cwdLen: 68,
  cwdComplete: 72,
  cwdComponents: 76,
  filename: 80,
  args: 80 + FILENAME_MAX,
  cwd: 80 + FILENAME_MAX + ARGS_MAX,
} as const;
export const EXEC_SIZE = OFF.cwd + CWD_AREA;

export const FRAME = { READY: 1, ERROR: 2, RECORDS: 3, LOST: 4, MARK: 5 } as const;
/** Largest frame the loader writes (its batch buffer). */
export const MAX_FRAME = 256 * 1024;

export type Frame =
  | { kind: "ready" }
  | { kind: "error"; text: string }
  | { kind: "lost"; total: bigint }
  /** The loader read the ring buffer at this monotonic time: every record reserved before is in an earlier frame. */
  | { kind: "mark"; ktime: bigint }
  | { kind: "records"; records: ProcessRecord[]; malformed: number }
  | { kind: "malformed"; why: string };

const cstr = (b: Buffer, at: number, max: number): string => {
  const end = b.indexOf(0, at);
  return b.toString("utf8", at, end < 0 || end > at + max ? at + max : end);
};

/** One exec record's fields (the buffer holds at least EXEC_SIZE bytes from `at`). */
export function decodeExec(b: Buffer, at: number): { kind: "exec" } & ExecRecord {
  const argBytes = b.readBigUInt64LE(at + OFF.argBytes);
  const argLen = Math.min(b.readUInt32LE(at + OFF.argLen), ARGS_MAX);
  const argOk = b.readInt32LE(at + OFF.argErr) === 0;
  const raw = argOk ? b.subarray(at + OFF.args, at + OFF.args + argLen) : Buffer.alloc(0);
  const parts = raw.toString("utf8").split("\0");
  if (parts.at(-1) === "") parts.pop();
  const fnLen = b.readInt32LE(at + OFF.filenameLen);
  const binary = fnLen > 0 ? cstr(b, at + OFF.filename, Math.min(fnLen, FILENAME_MAX)) : "";
  const cwdLen = Math.min(b.readUInt32LE(at + OFF.cwdLen), CWD_AREA);
  const names: string[] = [];
  for (let i = 0; i < cwdLen && names.length < CWD_DEPTH;) {
    const n = b.readUInt8(at + OFF.cwd + i);
    if (i + 1 + n > cwdLen) break;
    names.push(b.toString("utf8", at + OFF.cwd + i + 1, at + OFF.cwd + i + 1 + n));
    i += 1 + n;
  }
  const components = b.readUInt32LE(at + OFF.cwdComponents);
  return {
    kind: "exec",
    pid: b.readUInt32LE(at + OFF.pid),
    ppid: b.readUInt32LE(at + OFF.ppidOrCode),
    uid: b.readUInt32LE(at + OFF.uid),
    auid: b.readUInt32LE(at + OFF.auid),
    netns: b.readUInt32LE(at + OFF.netns),
    cgroup: b.readBigUInt64LE(at + OFF.cgroup),
    startBoottime: b.readBigUInt64LE(at + OFF.startBoottime),
    ktime: b.readBigUInt64LE(at + OFF.ktime),
    argv: parts,
    argsTruncated: !argOk || argBytes > BigInt(argLen),
    cwd: "/" + names.reverse().join("/"),
    cwdComplete: b.readUInt32LE(at + OFF.cwdComplete) === 1 && components === names.length,
    binary,
  };
}

/** The records of a RECORDS payload; a record cut short or of an unknown kind ends it (counted). */
export function decodeRecords(p: Buffer): { records: ProcessRecord[]; malformed: number } {
  const records: ProcessRecord[] = [];
  let at = 0;
  while (at + 4 <= p.length) {
    const kind = p.readUInt32LE(at);
    const size = kind === KIND_EXEC ? EXEC_SIZE : kind === KIND_FORK || kind === KIND_EXIT ? SMALL_SIZE : 0;
    if (size === 0 || at + size > p.length) return { records, malformed: 1 };
    const pid = p.readUInt32LE(at + OFF.pid);
    const ktime = p.readBigUInt64LE(at + OFF.ktime);
    const x = p.readUInt32LE(at + OFF.ppidOrCode);
    if (kind === KIND_EXEC) records.push(decodeExec(p, at));
    else if (kind === KIND_FORK) records.push({ kind: "fork", pid, ppid: x, ktime });
    else records.push({ kind: "exit", pid, code: x, ktime });
    at += size;
  }
  return { records, malformed: at === p.length ? 0 : 1 };
}

/** Splits the loader's byte stream into frames, whatever the chunking. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private broken = false;

  /** Frames completed by `chunk`; after a malformed frame, nothing more (the stream lost its framing). */
  push(chunk: Buffer): Frame[] {
    if (this.broken) return [];
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: Frame[] = [];
    let at = 0;
    while (at + 8 <= this.buf.length) {
      const type = this.buf.readUInt32LE(at);
      const len = this.buf.readUInt32LE(at + 4);
      if (len > MAX_FRAME) return this.fail(out, `frame of ${len} bytes (at most ${MAX_FRAME})`);
      if (at + 8 + len > this.buf.length) break;
      const p = this.buf.subarray(at + 8, at + 8 + len);
      at += 8 + len;
      if (type === FRAME.READY && len === 0) out.push({ kind: "ready" });
      else if (type === FRAME.ERROR) out.push({ kind: "error", text: p.toString("utf8").slice(0, 1000) });
      else if (type === FRAME.LOST && len === 8) out.push({ kind: "lost", total: p.readBigUInt64LE(0) });
      else if (type === FRAME.MARK && len === 8) out.push({ kind: "mark", ktime: p.readBigUInt64LE(0) });
      else if (type === FRAME.RECORDS) out.push({ kind: "records", ...decodeRecords(p) });
      else return this.fail(out, `unknown frame type ${type} of ${len} bytes`);
    }
    this.buf = this.buf.subarray(at);
    return out;
  }

  private fail(out: Frame[], why: string): Frame[] {
    this.broken = true;
    this.buf = Buffer.alloc(0);
    out.push({ kind: "malformed", why });
    return out;
  }
}
