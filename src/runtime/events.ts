/**
 * Runtime events in Tetragon's shape (api/v1/tetragon/tetragon.proto and
 * events.proto), as the JSON export writes them: proto field names
 * (snake_case), wrapper types as plain numbers, timestamps as RFC 3339
 * strings, enums by name. Only the fields Membrane fills are typed; every
 * one of them exists in Tetragon's schema (test/runtime/export-proto.test.ts
 * parses our lines with Tetragon's own descriptors, unknown fields refused).
 *
 * Five kinds: process_exec and process_exit come from the process event
 * source (./source); process_kprobe, process_tracepoint and process_uprobe
 * come from TracingPolicy sensors (src/runtime/policy, src/runtime/enforce)
 * and are handed to the same exporter through RuntimeSink.
 */

import type { RuntimePolicyEvent } from "./enforce/events.js";

/** Tetragon's Pod, for a process inside an endpoint. */
export interface TetragonPod {
  readonly namespace: string;
  readonly name: string;
  readonly pod_labels?: Readonly<Record<string, string>>;
  readonly workload?: string;
}

export interface TetragonProcess {
  readonly exec_id: string;
  readonly pid: number;
  readonly uid: number;
  readonly cwd: string;
  readonly binary: string;
  readonly arguments: string;
  /** Space-separated Tetragon flags: execve, procFS, clone, truncArgs, errorCWD, rootcwd, ... */
  readonly flags: string;
  readonly start_time: string;
  readonly auid: number;
  readonly pod?: TetragonPod;
  readonly parent_exec_id?: string;
  readonly tid?: number;
}

/** KprobeArgument: one of its typed values, and an optional label. */
export type TetragonArgument = { readonly label?: string } & (
  | { readonly string_arg: string }
  | { readonly int_arg: number }
  | { readonly uint_arg: number }
  | { readonly long_arg: string }
  | { readonly size_arg: string }
  | { readonly bytes_arg: string }
  | { readonly file_arg: { readonly path: string; readonly flags?: string; readonly permission?: string } }
  | { readonly path_arg: { readonly path: string; readonly flags?: string; readonly permission?: string } }
  | { readonly sock_arg: TetragonSock }
  | { readonly sockaddr_arg: { readonly family: string; readonly addr: string; readonly port: number } }
  | { readonly capability_arg: { readonly value?: number; readonly name?: string } }
);

export interface TetragonSock {
  readonly family?: string;
  readonly type?: string;
  readonly protocol?: string;
  readonly saddr?: string;
  readonly daddr?: string;
  readonly sport?: number;
  readonly dport?: number;
  readonly state?: string;
}

/** Tetragon's KprobeAction enum, by name. */
export type TetragonAction =
  | "KPROBE_ACTION_UNKNOWN"
  | "KPROBE_ACTION_POST"
  | "KPROBE_ACTION_FOLLOWFD"
  | "KPROBE_ACTION_SIGKILL"
  | "KPROBE_ACTION_UNFOLLOWFD"
  | "KPROBE_ACTION_OVERRIDE"
  | "KPROBE_ACTION_COPYFD"
  | "KPROBE_ACTION_GETURL"
  | "KPROBE_ACTION_DNSLOOKUP"
  | "KPROBE_ACTION_NOPOST"
  | "KPROBE_ACTION_SIGNAL"
  | "KPROBE_ACTION_TRACKSOCK"
  | "KPROBE_ACTION_UNTRACKSOCK"
  | "KPROBE_ACTION_NOTIFYENFORCER"
  | "KPROBE_ACTION_CLEANUPENFORCERNOTIFICATION"
  | "KPROBE_ACTION_SET";

export interface ProcessExec {
  readonly process: TetragonProcess;
  readonly parent?: TetragonProcess;
}

export interface ProcessExit {
  readonly process: TetragonProcess;
  readonly parent?: TetragonProcess;
  /** Signal name when killed by one ("SIGKILL"); absent otherwise. */
  readonly signal?: string;
  /** Exit code when it exited (0..255); absent (0) when killed by a signal. */
  readonly status?: number;
  readonly time: string;
}

export interface ProcessKprobe {
  readonly process: TetragonProcess;
  readonly parent?: TetragonProcess;
  readonly function_name: string;
  readonly args?: readonly TetragonArgument[];
  readonly action?: TetragonAction;
  readonly policy_name?: string;
  readonly message?: string;
  readonly tags?: readonly string[];
}

export interface ProcessTracepoint {
  readonly process: TetragonProcess;
  readonly parent?: TetragonProcess;
  readonly subsys: string;
  readonly event: string;
  readonly args?: readonly TetragonArgument[];
  readonly policy_name?: string;
  readonly action?: TetragonAction;
  readonly message?: string;
  readonly tags?: readonly string[];
}

export interface ProcessUprobe {
  readonly process: TetragonProcess;
  readonly parent?: TetragonProcess;
  readonly path: string;
  readonly symbol: string;
  readonly policy_name?: string;
  readonly message?: string;
  readonly args?: readonly TetragonArgument[];
  readonly action?: TetragonAction;
  readonly tags?: readonly string[];
}

/** The five kinds, by their key in GetEventsResponse. */
export const RUNTIME_EVENT_TYPES = [
  "process_exec",
  "process_exit",
  "process_kprobe",
  "process_tracepoint",
  "process_uprobe",
] as const;
export type RuntimeEventType = (typeof RUNTIME_EVENT_TYPES)[number];

/** One line of the export: GetEventsResponse with exactly one event set. */
export type RuntimeEvent = (
  | { readonly process_exec: ProcessExec }
  | { readonly process_exit: ProcessExit }
  | { readonly process_kprobe: ProcessKprobe }
  | { readonly process_tracepoint: ProcessTracepoint }
  | { readonly process_uprobe: ProcessUprobe }
) & { readonly node_name: string; readonly time: string };

/** The type of an event (its one key). */
export function eventType(e: RuntimeEvent): RuntimeEventType {
  for (const t of RUNTIME_EVENT_TYPES) if (t in e) return t;
  throw new Error("runtime event without a known type");
}

/** The process an event is about, whatever its kind. */
export function eventProcess(e: RuntimeEvent): TetragonProcess {
  const body = (e as unknown as Record<string, { process: TetragonProcess }>)[eventType(e)];
  if (!body) throw new Error("runtime event without a body");
  return body.process;
}

/** Tetragon's metric label of a type: PROCESS_EXEC, ... */
export function eventTypeLabel(t: RuntimeEventType): string {
  return t.toUpperCase();
}

/**
 * Where events of the policy sensors enter (wired by the agent at merge):
 * the runtime controller implements it; a sensor calls `push` with an event
 * whose process it took from `processOf(pid)` (the cache names its pod and parent).
 */
export interface RuntimeSink {
  push(e: RuntimeEvent): void;
  /**
   * A policy sensor's event, turned into its RuntimeEvent once its process is known (held a while
   * when it is not yet: ../runtime/event-cache.ts); absent: the caller builds and pushes it at once.
   */
  pushPolicy?(e: RuntimePolicyEvent): void;
  /** The process `pid` is, or was at monotonic time `ktime` when given (its image before a later exec). */
  processOf(pid: number, ktime?: bigint): { process: TetragonProcess; parent?: TetragonProcess } | undefined;
  /**
   * The pod of a network namespace inode (undefined: the host's), for an event whose process the
   * cache does not know yet (its exec record not read when the policy's event came).
   */
  podOf?(netns: number): TetragonPod | undefined;
  /** TracingPolicy events lost before the agent read them (kernel) or over its rate budget (agent). */
  policyLost?(lost: { readonly kernel: number; readonly agent: number }): void;
}
