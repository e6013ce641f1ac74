/**
 * The process cache: pid -> the process as Tetragon describes it, with its
 * parent's exec_id, fed by exec/fork/exit records and by a /proc scan at start
 * (proc-scan.ts), and turning records into Tetragon events.
 *
 *   exec record --> new entry (flags "execve"), parent = entry of ppid  --> process_exec
 *   fork record --> copy of the parent's entry (flags "clone")          --> (cache only)
 *   exit record --> process_exit, entry kept a while among the exited (late children name it)
 *   /proc scan  --> entries for processes started before the agent (flags "procFS"),
 *                   never over an entry an event already made
 *
 * Bounded: at most `capacity` live entries (the oldest evicted, counted) and
 * EXITED_KEEP exited ones.
 */
import { execId, exitStatus, IsoClock } from "./exec-id.js";
import type { ExecRecord } from "./source/assemble.js";
import type { ProcessExec, ProcessExit, TetragonPod, TetragonProcess } from "./events.js";

export const EXITED_KEEP = 4096;

export interface CacheEntry {
  readonly pid: number;
  readonly ppid: number;
  readonly ktime: bigint;
  readonly netns: number;
  readonly startBoottime: bigint;
  readonly process: TetragonProcess;
  /** The image this one's exec replaced (one level): events from before the exec name it. */
  readonly previous?: CacheEntry;
  /** When it exited (set once, as the entry moves among the exited). */
  exitKtime?: bigint;
}

export interface ProcessCacheParams {
  readonly nodeName: string;
  readonly bootNs: bigint;
  /** The endpoint a network namespace (inode) belongs to; undefined = the host. */
  readonly podOf: (netns: number) => TetragonPod | undefined;
  readonly capacity?: number;
}

/** Tetragon's `arguments`: argv[1..] joined by spaces, an argument with a space quoted. */
export function joinArguments(argv: readonly string[]): string {
  return argv
    .slice(1)
    .map((a) => (/[\s"]/.test(a) || a === "" ? JSON.stringify(a) : a))
    .join(" ");
}

/** An entry without its own previous image (the chain stays one level deep). */
function oneLevel(e: CacheEntry): CacheEntry {
  if (!e.previous) return e;
  const { previous: _dropped, ...rest } = e;
  return rest;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export class ProcessCache {
  private readonly live = new Map<number, CacheEntry>();
  private readonly exited = new Map<number, CacheEntry>();
  private readonly clock: IsoClock;
  evicted = 0;

  constructor(private readonly p: ProcessCacheParams) {
    this.clock = new IsoClock(p.bootNs);
  }

  get size(): number {
    return this.live.size;
  }

  get(pid: number): CacheEntry | undefined {
    return this.live.get(pid) ?? this.exited.get(pid);
  }

  /**
   * The image `pid` ran at monotonic time `ktime` (0: whatever it is now): the entry, or the one
   * its exec replaced when `ktime` came before that exec; undefined when the cache knows no process
   * of that pid alive then (not read yet, or an earlier holder of the pid that had exited).
   */
  at(pid: number, ktime: bigint): CacheEntry | undefined {
    const e = this.get(pid);
    if (!e || ktime === 0n) return e;
    if (e.ktime <= ktime) return e.exitKtime === undefined || ktime <= e.exitKtime ? e : undefined;
    return e.previous && e.previous.ktime <= ktime ? e.previous : undefined;
  }

  private put(e: CacheEntry): void {
    this.live.delete(e.pid);
    this.exited.delete(e.pid);
    if (this.live.size >= (this.p.capacity ?? 65_536)) {
      const oldest = this.live.keys().next().value;
      if (oldest !== undefined) this.live.delete(oldest);
      this.evicted++;
    }
    this.live.set(e.pid, e);
  }

  private withPod(netns: number, base: Omit<TetragonProcess, "pod">): TetragonProcess {
    const pod = this.p.podOf(netns);
    return pod ? { ...base, pod } : base;
  }

  /**
   * A process of an exec or fork record, its keys always in this order (the export's), built as
   * one literal: spreading a parent's twelve fields per fork was a fifth of this cache's time.
   */
  private make(
    pid: number,
    ktime: bigint,
    netns: number,
    f: Pick<TetragonProcess, "uid" | "cwd" | "binary" | "arguments" | "auid">,
    flags: string,
    parentExecId: string | undefined,
  ): TetragonProcess {
    const p: Mutable<TetragonProcess> = {
      exec_id: execId(this.p.nodeName, ktime, pid),
      pid,
      uid: f.uid,
      cwd: f.cwd,
      binary: f.binary,
      arguments: f.arguments,
      flags,
      start_time: this.clock.iso(ktime),
      auid: f.auid,
    };
    if (parentExecId !== undefined) p.parent_exec_id = parentExecId;
    const pod = this.p.podOf(netns);
    if (pod) p.pod = pod;
    return p;
  }

  exec(r: ExecRecord): ProcessExec {
    const parent = this.get(r.ppid);
    const before = this.live.get(r.pid);
    let flags = "execve";
    if (r.argsTruncated) flags += " truncArgs";
    if (!r.cwdComplete) flags += " errorCWD";
    else if (r.cwd === "/") flags += " rootcwd";
    const process = this.make(
      r.pid,
      r.ktime,
      r.netns,
      { uid: r.uid, cwd: r.cwd, binary: r.binary, arguments: joinArguments(r.argv), auid: r.auid },
      flags,
      parent?.process.exec_id,
    );
    const entry: CacheEntry = {
      pid: r.pid,
      ppid: r.ppid,
      ktime: r.ktime,
      netns: r.netns,
      startBoottime: r.startBoottime,
      process,
    };
    if (before) (entry as Mutable<CacheEntry>).previous = oneLevel(before);
    this.put(entry);
    return parent ? { process, parent: parent.process } : { process };
  }

  fork(pid: number, ppid: number, ktime: bigint): void {
    const parent = this.get(ppid);
    if (!parent) return; // an exec or the scan will name it
    const pp = parent.process;
    const process = this.make(pid, ktime, parent.netns, pp, "clone", pp.exec_id);
    this.put({ pid, ppid, ktime, netns: parent.netns, startBoottime: ktime, process });
  }

  /** A process's last thread exited; undefined when the cache never knew it. */
  exit(pid: number, code: number, ktime: bigint): ProcessExit | undefined {
    const e = this.live.get(pid);
    if (!e) return undefined;
    this.live.delete(pid);
    e.exitKtime = ktime;
    this.exited.set(pid, e);
    if (this.exited.size > EXITED_KEEP) {
      const oldest = this.exited.keys().next().value;
      if (oldest !== undefined) this.exited.delete(oldest);
    }
    const parent = this.get(e.ppid);
    const s = exitStatus(code);
    const time = this.clock.iso(ktime);
    // literals in the export's key order: process, parent, signal, status, time
    if (s.signal !== undefined)
      return parent
        ? { process: e.process, parent: parent.process, signal: s.signal, status: s.status, time }
        : { process: e.process, signal: s.signal, status: s.status, time };
    return parent
      ? { process: e.process, parent: parent.process, status: s.status, time }
      : { process: e.process, status: s.status, time };
  }

  /** An entry from the /proc scan, unless an event made one already. */
  seed(e: Omit<CacheEntry, "process"> & { process: Omit<TetragonProcess, "pod" | "parent_exec_id"> }): void {
    if (this.live.has(e.pid)) return;
    this.put({ ...e, process: this.withPod(e.netns, e.process) });
  }

  /** After the scan: parents named now that every scanned process is known. */
  linkParents(): void {
    for (const [pid, e] of this.live) {
      if (e.process.parent_exec_id !== undefined) continue;
      const parent = this.live.get(e.ppid);
      if (parent)
        this.live.set(pid, { ...e, process: { ...e.process, parent_exec_id: parent.process.exec_id } });
    }
  }

  /** Pods are looked up again (an endpoint created after its processes were cached). */
  refreshPods(): void {
    for (const [pid, e] of this.live) {
      const { pod: _old, ...rest } = e.process;
      this.live.set(pid, { ...e, process: this.withPod(e.netns, rest) });
    }
  }
}
