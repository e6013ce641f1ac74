/**
 * Raw lines -> whole process records (pure). An exec is E, A* lines of one
 * program and C*, B lines of another (source/script.ts), in either order; they
 * are joined per (pid, exec seq) and emitted once both halves came. Bounded: at most
 * MAX_PENDING execs wait for their B line; the oldest is dropped (and counted)
 * beyond, and a line that belongs to no pending exec is counted, never thrown.
 */
import type { RawLine } from "./lines.js";
import { ARG_CHUNKS, BUFLEN } from "./script.js";

export const MAX_PENDING = 4096;

export interface ExecRecord {
  readonly pid: number;
  readonly ppid: number;
  readonly uid: number;
  readonly auid: number;
  readonly netns: number;
  readonly cgroup: bigint;
  readonly startBoottime: bigint;
  readonly ktime: bigint;
  /** argv[0] and the rest, as the process was given them. */
  readonly argv: readonly string[];
  readonly argsTruncated: boolean;
  readonly cwd: string;
  readonly cwdComplete: boolean;
  readonly binary: string;
}

export type ProcessRecord =
  | ({ kind: "exec" } & ExecRecord)
  | { kind: "fork"; pid: number; ppid: number; ktime: bigint }
  | { kind: "exit"; pid: number; code: number; ktime: bigint };

interface Pending {
  head?: Extract<RawLine, { kind: "exec" }>;
  chunks: Buffer[];
  cwd: Buffer[];
  /** A cwd component longer than bpftrace printed. */
  cwdCut: boolean;
  binary?: Extract<RawLine, { kind: "binary" }>;
}

export class Assembler {
  private readonly pending = new Map<string, Pending>();
  /** Lines that could not be joined (their exec was lost or dropped). */
  orphans = 0;

  constructor(private readonly emit: (r: ProcessRecord) => void) {}

  /** The pid's pending exec, made when `create`; the oldest is dropped beyond MAX_PENDING. */
  private slot(key: string, create: boolean): Pending | undefined {
    const p = this.pending.get(key);
    if (p || !create) return p;
    if (this.pending.size >= MAX_PENDING) {
      const oldest = this.pending.keys().next().value;
      if (oldest !== undefined) this.pending.delete(oldest);
      this.orphans++;
    }
    const n: Pending = { chunks: [], cwd: [], cwdCut: false };
    this.pending.set(key, n);
    return n;
  }

  /** Emits once the header, every argument chunk it announced and the binary (last of the cwd half) came. */
  private complete(key: string, p: Pending): void {
    if (!p.head || !p.binary) return;
    const want = Math.ceil(Math.min(p.head.argBytes, ARG_CHUNKS * BUFLEN) / BUFLEN);
    if (p.chunks.length < want) return;
    this.pending.delete(key);
    this.emit({ kind: "exec", ...finish(p.head, p.chunks, p.cwd, p.binary, p.cwdCut) });
  }

  push(l: RawLine): void {
    const key = l.kind === "fork" || l.kind === "exit" ? "" : `${l.pid}:${l.seq}`;
    switch (l.kind) {
      case "fork":
      case "exit":
        this.emit(l);
        return;
      case "exec": {
        let p = this.slot(key, true) as Pending;
        if (p.head) {
          this.orphans++; // the rest of an earlier exec never came
          this.pending.delete(key);
          p = this.slot(key, true) as Pending;
        }
        p.head = l;
        this.complete(key, p);
        return;
      }
      case "args": {
        const p = this.slot(key, false);
        if (!p?.head) {
          this.orphans++;
          return;
        }
        if (p.chunks.length < ARG_CHUNKS) p.chunks.push(l.chunk);
        this.complete(key, p);
        return;
      }
      case "cwd": {
        let p = this.slot(key, true) as Pending;
        if (p.binary) {
          this.orphans++;
          this.pending.delete(key);
          p = this.slot(key, true) as Pending;
        }
        if (p.cwd.length < 64) p.cwd.push(l.component);
        if (l.length > l.component.length) p.cwdCut = true;
        return;
      }
      case "binary": {
        const p = this.slot(key, true) as Pending;
        if (p.binary) this.orphans++;
        p.binary = l;
        this.complete(key, p);
        return;
      }
    }
  }
}

function finish(
  h: Extract<RawLine, { kind: "exec" }>,
  chunks: readonly Buffer[],
  cwdParts: readonly Buffer[],
  b: Extract<RawLine, { kind: "binary" }>,
  cwdCut: boolean,
): ExecRecord {
  const raw = Buffer.concat(chunks);
  const cap = ARG_CHUNKS * BUFLEN;
  const argsTruncated = h.argBytes > cap || raw.length < Math.min(h.argBytes, cap);
  // argv is NUL-separated and NUL-terminated; a truncated tail has no final NUL.
  const parts = raw.toString("utf8").split("\0");
  if (parts.at(-1) === "") parts.pop();
  const cwd =
    "/" +
    cwdParts
      .map((c) => c.toString("utf8"))
      .reverse()
      .join("/");
  return {
    pid: h.pid,
    ppid: h.ppid,
    uid: h.uid,
    auid: h.auid,
    netns: h.netns,
    cgroup: h.cgroup,
    startBoottime: h.startBoottime,
    ktime: h.ktime,
    argv: parts,
    argsTruncated,
    cwd,
    cwdComplete: b.cwdComplete && !cwdCut && b.components === cwdParts.length,
    binary: b.filename,
  };
}
