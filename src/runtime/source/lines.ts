/**
 * bpftrace's JSON output lines -> raw process records (pure; hostile input).
 *
 *   {"type":"printf","data":"E 12 1 0 ..."}  --parseLine-->  RawLine | {kind:"lost", n} | {kind:"malformed", why}
 *
 * Every line is untrusted: a workload names its files and arguments, and a
 * broken pipe can cut a line anywhere. A line longer than MAX_LINE, not JSON,
 * or with fields that are not what the script prints is `malformed` (counted
 * and dropped by the caller), never thrown.
 */
import { jsonObjectLine } from "../json-line.js";

/** Longest line accepted (a chunk line is ~ 4 x STRLEN bytes once escaped twice). */
export const MAX_LINE = 4096;

export type RawLine =
  | { kind: "fork"; pid: number; ppid: number; ktime: bigint }
  | {
      kind: "exec";
      pid: number;
      seq: bigint;
      ppid: number;
      uid: number;
      auid: number;
      netns: number;
      cgroup: bigint;
      startBoottime: bigint;
      ktime: bigint;
      argBytes: number;
    }
  | { kind: "args"; pid: number; seq: bigint; chunk: Buffer }
  | { kind: "cwd"; pid: number; seq: bigint; length: number; component: Buffer }
  | { kind: "binary"; pid: number; seq: bigint; components: number; cwdComplete: boolean; filename: string }
  | { kind: "exit"; pid: number; code: number; ktime: bigint };

export type ParsedLine =
  | RawLine
  | { kind: "lost"; n: number }
  | { kind: "attached"; probes: number }
  | { kind: "ignored" }
  | { kind: "malformed"; why: string };

const U32 = /^\d{1,10}$/;
const U64 = /^\d{1,20}$/;

function u32(s: string | undefined): number | undefined {
  if (s === undefined || !U32.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffffffff ? n : undefined;
}

function u64(s: string | undefined): bigint | undefined {
  if (s === undefined || !U64.test(s)) return undefined;
  const n = BigInt(s);
  return n <= 0xffffffffffffffffn ? n : undefined;
}

/** Decodes bpftrace's `%r` escaping (`\xNN` for non-printable bytes) into the bytes. */
export function unescapeBuf(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x5c && s[i + 1] === "x" && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 2, i + 4))) {
      out.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 3;
    } else if (c < 0x80) {
      out.push(c);
    } else {
      for (const b of Buffer.from(s[i] ?? "", "utf8")) out.push(b);
    }
  }
  return Buffer.from(out);
}

const bad = (why: string): ParsedLine => ({ kind: "malformed", why });

/** One line of `bpftrace -f json` output. */
export function parseLine(line: string): ParsedLine {
  const msg = jsonObjectLine(line, MAX_LINE);
  if (typeof msg === "string") return bad(msg);
  const { type, data } = msg;
  if (type === "lost_events") {
    const n = (data as { events?: unknown } | null)?.events;
    return typeof n === "number" && Number.isSafeInteger(n) && n >= 0
      ? { kind: "lost", n }
      : bad("lost count");
  }
  if (type === "attached_probes") {
    const n = (data as { probes?: unknown } | null)?.probes;
    return { kind: "attached", probes: typeof n === "number" ? n : 0 };
  }
  if (type !== "printf") return { kind: "ignored" };
  if (typeof data !== "string") return bad("printf data is not a string");
  return parseData(data.endsWith("\n") ? data.slice(0, -1) : data);
}

/** Splits off `n` space-separated fields; the rest (may contain spaces) is the last element. */
function fields(s: string, n: number): string[] {
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < n; i++) {
    const sp = s.indexOf(" ", at);
    if (sp < 0) {
      out.push(s.slice(at));
      return out;
    }
    out.push(s.slice(at, sp));
    at = sp + 1;
  }
  out.push(s.slice(at));
  return out;
}

function parseData(d: string): ParsedLine {
  const tag = d.slice(0, 2);
  switch (tag) {
    case "F ": {
      const f = d.split(" ");
      const [pid, ppid, ktime] = [u32(f[1]), u32(f[2]), u64(f[3])];
      if (f.length !== 4 || pid === undefined || ppid === undefined || ktime === undefined)
        return bad("fork");
      return { kind: "fork", pid, ppid, ktime };
    }
    case "E ": {
      const f = d.split(" ");
      const [pid, seq, ppid, uid, auid, netns] = [
        u32(f[1]),
        u64(f[2]),
        u32(f[3]),
        u32(f[4]),
        u32(f[5]),
        u32(f[6]),
      ];
      const [cgroup, startBoottime, ktime, argBytes] = [u64(f[7]), u64(f[8]), u64(f[9]), u64(f[10])];
      if (
        f.length !== 11 ||
        pid === undefined ||
        seq === undefined ||
        ppid === undefined ||
        uid === undefined ||
        auid === undefined ||
        netns === undefined ||
        cgroup === undefined ||
        startBoottime === undefined ||
        ktime === undefined ||
        argBytes === undefined
      )
        return bad("exec");
      const bytes = argBytes > 0xffffffffn ? 0xffffffff : Number(argBytes);
      return {
        kind: "exec",
        pid,
        seq,
        ppid,
        uid,
        auid,
        netns,
        cgroup,
        startBoottime,
        ktime,
        argBytes: bytes,
      };
    }
    case "A ": {
      const [, p, q, rest] = fields(d, 3);
      const [pid, seq] = [u32(p), u64(q)];
      if (pid === undefined || seq === undefined || rest === undefined) return bad("args");
      return { kind: "args", pid, seq, chunk: unescapeBuf(rest) };
    }
    case "C ": {
      const [, p, q, n, rest] = fields(d, 4);
      const [pid, seq, length] = [u32(p), u64(q), u32(n)];
      if (pid === undefined || seq === undefined || length === undefined || rest === undefined)
        return bad("cwd");
      return { kind: "cwd", pid, seq, length, component: unescapeBuf(rest) };
    }
    case "B ": {
      const [, p, q, n, c, filename] = fields(d, 5);
      const [pid, seq, components] = [u32(p), u64(q), u32(n)];
      if (
        pid === undefined ||
        seq === undefined ||
        components === undefined ||
        (c !== "0" && c !== "1") ||
        filename === undefined
      )
        return bad("binary");
      return { kind: "binary", pid, seq, components, cwdComplete: c === "1", filename };
    }
    case "X ": {
      const f = d.split(" ");
      const [pid, code, ktime] = [u32(f[1]), u32(f[2]), u64(f[3])];
      if (f.length !== 4 || pid === undefined || code === undefined || ktime === undefined)
        return bad("exit");
      return { kind: "exit", pid, code, ktime };
    }
    default:
      return bad("unknown line");
  }
}
