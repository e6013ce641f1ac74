/**
 * TracingPolicy in Membrane's normalised form: what `parseTracingPolicies`
 * returns and the enforcer compiles. The user's YAML shape (Tetragon's
 * `cilium.io/v1alpha1` TracingPolicy / TracingPolicyNamespaced) is read once
 * in parse.ts; nothing downstream looks at raw YAML.
 *
 *   YAML --parse.ts--> TracingPolicy { probes[ {hook, functionName, attach[], selectors[]} ] }
 *                          |  attach: tracepoints of this kernel (translation.ts)
 *                          v
 *                   runtime/enforce (syscall guard, bpftrace for the rest: uprobes among them)
 */
import type { Selector } from "../../labels/selector.js";

export type TracingPolicyKind = "TracingPolicy" | "TracingPolicyNamespaced";
export const TRACING_API_VERSION = "cilium.io/v1alpha1";

/** Where a probe argument comes from in a tracepoint: a string (user pointer or data_loc) or an integer field. */
export interface ArgSource {
  /** Tracepoint field name (`filename`, `flags`, `dport`, `cap`); from Membrane's tables, never from a policy. */
  readonly field: string;
  /**
   * `ustr`: user-space pointer to a C string; `kstr`: `__data_loc` string in
   * the event; `int`: an integer; `sock`: a socket seen through
   * sock:inet_sock_set_state (its `sport`/`dport` fields, for SPort/DPort).
   */
  readonly kind: "ustr" | "kstr" | "int" | "sock";
}

/** One tracepoint a probe is served from, with its argument map and an optional fixed guard. */
export interface AttachPoint {
  /** `subsystem:event`, e.g. `syscalls:sys_enter_openat`. */
  readonly tracepoint: string;
  /** Tetragon argument index -> tracepoint field. */
  readonly args: ReadonlyMap<number, ArgSource>;
  /** A fixed condition from Membrane's translation table (e.g. `args->newstate == 2`); never built from policy text. */
  readonly guard?: string;
  /**
   * A uprobe instead of a tracepoint (`tracepoint` then reads `uprobe:PATH:SYMBOL`, for messages):
   * the function's entry in that file (checked by uprobe.ts: absolute path, plain symbol name);
   * its args are the registers `arg0`..`arg5`.
   */
  readonly uprobe?: UprobeTarget;
}

export interface UprobeTarget {
  readonly path: string;
  readonly symbol: string;
}

export type StringOperator = "Equal" | "NotEqual" | "Prefix" | "NotPrefix";
export type IntOperator =
  "Equal" | "NotEqual" | "GT" | "LT" | "Mask" | "DPort" | "NotDPort" | "SPort" | "NotSPort";

export type ArgMatch =
  | {
      readonly index: number;
      readonly kind: "string";
      readonly operator: StringOperator;
      /** Checked against SAFE_STRING (values.ts): no quote, backslash, control or format character. */
      readonly values: readonly string[];
    }
  | {
      readonly index: number;
      /**
       * Postfix / NotPostfix on a string read from user memory (syscall path
       * arguments): the string's length is found in the kernel (a bounded loop
       * of 1-byte reads, at most SUFFIX_SCAN bytes), then its tail compared.
       */
      readonly kind: "suffix";
      readonly operator: "Postfix" | "NotPostfix";
      readonly values: readonly string[];
    }
  | {
      readonly index: number;
      readonly kind: "int";
      readonly operator: IntOperator;
      readonly values: readonly bigint[];
    }
  | {
      /** A socket's or sockaddr's address against CIDRs (connect hooks only: cgroup connect4/6). */
      readonly index: number;
      readonly kind: "addr";
      readonly operator: AddrOperator;
      readonly values: readonly Cidr[];
    }
  | {
      /** Address family: AF_INET (2), AF_INET6 (10). */
      readonly index: number;
      readonly kind: "family";
      readonly operator: "Family";
      readonly values: readonly (2 | 10)[];
    };

export type AddrOperator = "DAddr" | "NotDAddr" | "SAddr" | "NotSAddr";

export interface Cidr {
  readonly family: 4 | 6;
  /** The network address as 32-bit words in host order (1 word for IPv4, 4 for IPv6). */
  readonly words: readonly number[];
  readonly prefix: number;
}

/** How a connect hook is served on endpoints: cgroup connect4/connect6 programs (runtime/enforce/connect-*.ts). */
export interface ConnectHook {
  /** tcp_connect sees stream sockets only; security_socket_connect every connect(). */
  readonly tcpOnly: boolean;
}

export type BinaryOperator = "In" | "NotIn" | "Prefix" | "NotPrefix";

export interface BinaryMatch {
  readonly operator: BinaryOperator;
  readonly values: readonly string[];
}

export interface PidMatch {
  readonly operator: "In" | "NotIn";
  readonly values: readonly number[];
  /**
   * The listed processes and every process they fork (at any depth, across
   * exec): served by the syscall guard only (runtime/enforce/native-rules.ts),
   * refused where another loader would serve the probe.
   */
  readonly followForks: boolean;
}

export type NamespaceType = "Uts" | "Ipc" | "Mnt" | "Net" | "Time" | "Cgroup" | "User";

export interface NamespaceMatch {
  readonly namespace: NamespaceType;
  readonly operator: "In" | "NotIn";
  /** Inode numbers, or `host_ns` (resolved by the enforcer to PID 1's namespace). */
  readonly values: readonly (number | "host_ns")[];
}

export interface CapabilityMatch {
  readonly type: "Effective" | "Inheritable" | "Permitted";
  readonly operator: "In" | "NotIn";
  /** Capability numbers (CAP_SYS_ADMIN = 21). */
  readonly values: readonly number[];
}

export type Action =
  | { readonly action: "Post" }
  | { readonly action: "NoPost" }
  | { readonly action: "Sigkill" }
  | { readonly action: "Signal"; readonly signal: number }
  /**
   * The hooked call fails with this errno (argError -1 = EPERM): file hooks are served by fanotify
   * (src/runtime/file/), connect hooks by cgroup connect4/6 programs (src/runtime/enforce/connect-*.ts).
   */
  | { readonly action: "Override"; readonly argError: number };

export interface TracingSelector {
  /** Field path of the selector, e.g. `spec.kprobes[0].selectors[1]`. */
  readonly path: string;
  readonly matchArgs: readonly ArgMatch[];
  readonly matchBinaries: readonly BinaryMatch[];
  /** The binary of the process's parent (real_parent); served by the syscall guard only, as followForks. */
  readonly matchParentBinaries: readonly BinaryMatch[];
  readonly matchPIDs: readonly PidMatch[];
  readonly matchNamespaces: readonly NamespaceMatch[];
  readonly matchCapabilities: readonly CapabilityMatch[];
  /** Empty means Post (Tetragon's default). */
  readonly actions: readonly Action[];
}

/** A declared argument to report in events (Tetragon `args[]`). */
export interface ProbeArg {
  readonly index: number;
  readonly type: string;
  readonly label: string | undefined;
}

export interface TracingProbe {
  readonly path: string;
  /** How the user declared it: a kprobe (syscall or kernel function), a tracepoint or a uprobe. */
  readonly hook: "kprobe" | "tracepoint" | "uprobe";
  /** What events report as `function_name` (kprobes: `__x64_sys_openat`, `security_file_permission`), `subsystem:event`, or a uprobe's symbol. */
  readonly functionName: string;
  readonly attach: readonly AttachPoint[];
  /** Set for connect hooks: on endpoints they are served by cgroup connect programs instead of `attach`. */
  readonly connect?: ConnectHook;
  readonly args: readonly ProbeArg[];
  /** Empty: every call posts an event. Selectors are ORed; the first that matches applies its actions. */
  readonly selectors: readonly TracingSelector[];
  readonly message: string | undefined;
  readonly tags: readonly string[];
  /**
   * File hooks: the fanotify permission events that can deny this hook's
   * access (translation.ts); Override selectors are served by them.
   */
  readonly fanotify?: FanotifyEvents;
}

/** `open`: FAN_OPEN_PERM; `open+read`: FAN_OPEN_PERM and FAN_ACCESS_PERM. */
export type FanotifyEvents = "open" | "open+read";

export interface TracingPolicy {
  readonly kind: TracingPolicyKind;
  readonly name: string;
  /** TracingPolicyNamespaced only: the policy applies to this namespace's endpoints. */
  readonly namespace: string | undefined;
  /**
   * Which endpoints' processes the policy sees: the podSelector, scoped to the
   * namespace for TracingPolicyNamespaced. Undefined: every process of the
   * node, the host's own included.
   */
  readonly podSelector: Selector | undefined;
  /** `membrane.io/allow-unsafe-kill: "true"`: accept Sigkill/Signal that is not narrowed to workloads (safety.ts). */
  readonly allowUnsafeKill: boolean;
  readonly probes: readonly TracingProbe[];
}

export function policyKey(p: {
  kind: TracingPolicyKind;
  namespace: string | undefined;
  name: string;
}): string {
  return p.kind === "TracingPolicyNamespaced" ? `${p.namespace ?? ""}/${p.name}` : p.name;
}
