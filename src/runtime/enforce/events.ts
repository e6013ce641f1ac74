/**
 * What the enforcer reports when a TracingPolicy matched: a record close to
 * Tetragon's `process_kprobe` / `process_tracepoint` / `process_uprobe` export, handed to a
 * RuntimeEventSink. The exporter (Tetragon JSON, metrics) lives elsewhere and
 * is wired at the agent; the enforcer only fills this record.
 *
 *   bpftrace line --output.ts--> RuntimePolicyEvent --sink.onPolicyEvent--> exporter
 *                                lost/dropped counts --sink.onLost--------> metrics
 */

export type PolicyEventType = "process_kprobe" | "process_tracepoint" | "process_uprobe";
/** Tetragon's action names in exported events. */
export type PolicyEventAction =
  | "KPROBE_ACTION_POST"
  | "KPROBE_ACTION_SIGKILL"
  | "KPROBE_ACTION_SIGNAL"
  /** A connect() refused by a cgroup connect program (Override). */
  | "KPROBE_ACTION_OVERRIDE";

export interface PolicyEventArg {
  /** Tetragon arg index as declared in the policy. */
  readonly index: number;
  readonly type: string;
  readonly label: string | undefined;
  /** A string argument (a path), or an integer as a decimal string; undefined when it cannot be read here. */
  readonly value: string | undefined;
  /** A socket argument (tcp_connect): exported as Tetragon's sock_arg. */
  readonly sock?: {
    readonly family: string;
    readonly protocol?: string;
    readonly daddr: string;
    readonly dport: number;
  };
  /** A sockaddr argument (security_socket_connect): exported as Tetragon's sockaddr_arg. */
  readonly sockaddr?: { readonly family: string; readonly addr: string; readonly port: number };
}

export interface RuntimePolicyEvent {
  readonly type: PolicyEventType;
  readonly policyName: string;
  /** TracingPolicyNamespaced only. */
  readonly policyNamespace: string | undefined;
  /** `__x64_sys_openat`, `security_file_permission`, `sched:sched_process_exec`; a uprobe's symbol. */
  readonly functionName: string;
  /** process_uprobe: the file and function hooked (Tetragon's `path` and `symbol`). */
  readonly uprobe?: { readonly path: string; readonly symbol: string };
  readonly action: PolicyEventAction;
  /** Signal sent for KPROBE_ACTION_SIGKILL (9) and KPROBE_ACTION_SIGNAL. */
  readonly signal: number | undefined;
  readonly pid: number;
  readonly tid: number;
  readonly uid: number;
  /** `comm` as the kernel holds it (at most 15 bytes); non-printable bytes as `\xNN`. */
  readonly comm: string;
  /** Inode of the process's network namespace: the agent maps it to an endpoint. */
  readonly netnsInode: number;
  readonly cgroupId: string;
  readonly args: readonly PolicyEventArg[];
  readonly message: string | undefined;
  readonly tags: readonly string[];
  /** CLOCK_MONOTONIC nanoseconds at the hook (bpftrace `nsecs`), for latency figures. */
  readonly ktimeNs: bigint;
  /** Wall time the agent read the event. */
  readonly time: Date;
}

export interface LostCounts {
  /** Events the kernel could not hand to bpftrace (its perf buffer was full). Kills are not affected. */
  readonly kernel: number;
  /** Events read but not delivered (over the agent's per-policy rate budget). */
  readonly agent: number;
}

export interface RuntimeEventSink {
  onPolicyEvent(e: RuntimePolicyEvent): void;
  onLost?(policyName: string, lost: LostCounts): void;
}
