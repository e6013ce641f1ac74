/**
 * Values a TracingPolicy may carry into a compiled program, checked here so
 * that nothing a policy says can become code: strings keep to a strict
 * alphabet (no quote, backslash, `%`, control or non-ASCII character) and a
 * length the enforcer can compare in one read; integers are plain decimal or
 * hex within 64 bits.
 */

/** Longest string value compared in the kernel: enforce/script.ts SCRIPT_STRLEN - 2, so that Equal stays exact (a longer path differs in the byte after). */
export const MAX_STRING_VALUE = 78;
/** Paths, binary names, file names: letters, digits and `/._-+@:=,~`. */
export const SAFE_STRING = /^[A-Za-z0-9/._+@:=,~-]+$/;

/** Why `s` cannot be compiled, or undefined when it can. */
export function checkString(s: string): string | undefined {
  if (s.length === 0) return "must not be empty";
  if (s.length > MAX_STRING_VALUE)
    return `is ${s.length} characters long; at most ${MAX_STRING_VALUE} are compared`;
  if (!SAFE_STRING.test(s)) {
    const bad = [...s].find((c) => !SAFE_STRING.test(c)) ?? "";
    return `contains ${JSON.stringify(bad)}: values may hold only letters, digits and / . _ + @ : = , ~ -`;
  }
  return undefined;
}

const MAX_U64 = (1n << 64n) - 1n;
const MIN_S64 = -(1n << 63n);

/** A decimal or 0x-hex integer (as a string or a YAML number) within 64 bits. */
export function parseInteger(v: string | number): bigint | undefined {
  const s = typeof v === "number" ? (Number.isInteger(v) ? String(v) : "") : v.trim();
  if (!/^-?(?:0x[0-9a-fA-F]{1,16}|\d{1,20})$/.test(s)) return undefined;
  const neg = s.startsWith("-");
  const n = BigInt(neg ? s.slice(1) : s);
  const r = neg ? -n : n;
  return r < MIN_S64 || r > MAX_U64 ? undefined : r;
}

/** Linux capability numbers (include/uapi/linux/capability.h). */
export const CAPABILITIES: Readonly<Record<string, number>> = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36,
  CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
  CAP_CHECKPOINT_RESTORE: 40,
};

/** Signal numbers Signal may send (x86-64); names as Tetragon accepts them in argSig are numbers. */
export const MAX_SIGNAL = 31;
