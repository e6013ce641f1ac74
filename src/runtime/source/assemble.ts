/**
 * Raw lines -> whole process records (pure). An exec is E, A*, C*, B lines of
 * one probe run (source/script.ts); they are joined per pid. Bounded: at most
 * MAX_PENDING execs wait for their B line; the oldest is dropped (and counted)
 * beyond, and a line that belongs to no pending exec is counted, never thrown.
 */
import type { RawLine } from "./lines.js";
import { ARG_CHUNKS, STRLEN } from "./script.js";

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
  head: Extract<RawLine, { kind: "exec" }>;
  chunks: Buffer[];
  cwd: Buffer[];
}

export class Assembler {
  private readonly pending = new Map<number, Pending>();
  /** Lines that could not be joined (their exec was lost or dropped). */
  orphans = 0;

  constructor(private readonly emit: (r: ProcessRecord) => void) {}

  push(l: RawLine): void {
    switch (l.kind) {
      case "fork":
        this.emit(l);
        return;
      case "exit":
        this.emit(l);
        return;
      case "exec":
        if (this.pending.has(l.pid)) this.orphans++; // its B line never came
        this.pending.delete(l.pid);
        if (this.pending.size >= MAX_PENDING) {
          const oldest = this.pending.keys().next().value;
          if (oldest !== undefined) this.pending.delete(oldest);
          this.orphans++;
        }
        this.pending.set(l.pid, { head: l, chunks: [], cwd: [] });
        return;
      case "args":
      case "cwd": {
        const p = this.pending.get(l.pid);
        if (!p) {
          this.orphans++;
          return;
        }
        if (l.kind === "args" && p.chunks.length < ARG_CHUNKS) p.chunks.push(l.chunk);
        else if (l.kind === "cwd" && p.cwd.length < 64) p.cwd.push(l.component);
        return;
      }
      case "binary": {
        const p = this.pending.get(l.pid);
        if (!p) {
          this.orphans++;
          return;
        }
        this.pending.delete(l.pid);
        this.emit({ kind: "exec", ...finish(p, l) });
        return;
      }
    }
  }
}

function finish(p: Pending, b: Extract<RawLine, { kind: "binary" }>): ExecRecord {
  const raw = Buffer.concat(p.chunks);
  const cap = ARG_CHUNKS * STRLEN;
  const argsTruncated = p.head.argBytes > cap || raw.length < Math.min(p.head.argBytes, cap);
  // argv is NUL-separated and NUL-terminated; a truncated tail has no final NUL.
  const parts = raw.toString("utf8").split("\0");
  if (parts.at(-1) === "") parts.pop();
  const cwd =
    "/" +
    p.cwd
      .map((c) => c.toString("utf8"))
      .reverse()
      .join("/");
  const h = p.head;
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
    cwdComplete: b.cwdComplete && b.components === p.cwd.length,
    binary: b.filename,
  };
}
