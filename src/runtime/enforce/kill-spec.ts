/**
 * What the syscall guard's programs are generated from (native-rules.ts
 * fills it from a policy; kill-prog.ts and kill-learn.ts compile it). Pure
 * data and the limits the programs are built to.
 */
import type { NamespaceType } from "../policy/types.js";

/** Bytes of a path read for matching (with its NUL); a slot of the scratch map each. */
export const PATH_READ = 4096;
/** String slots per probe (a probe compares at most this many distinct string arguments). */
export const STR_SLOTS = 2;
export const REGS_AT = PATH_READ * STR_SLOTS;
export const SCRATCH_SIZE = REGS_AT + 256;
/** Bits of a process's mask (one per matchBinaries/matchParentBinaries entry, one per followForks entry). */
export const MAX_BINARIES = 32;
/** Follows take the mask's bits from the top (binaries from the bottom). */
export const followBit = (j: number): number => MAX_BINARIES - 1 - j;

/** Whether the programs keep process masks (matchBinaries, matchParentBinaries, followForks). */
export const learns = (spec: GuardSpec): boolean => spec.binaries.length + spec.follows.length > 0;

export type StrOp = "Equal" | "NotEqual" | "Prefix" | "NotPrefix" | "Postfix" | "NotPostfix";
export type IntOp = "Equal" | "NotEqual" | "GT" | "LT" | "Mask";

export interface GuardSelector {
  /** The event's rule id; undefined for an Override selector (served by fanotify: it decides, nothing here). */
  readonly rule: number | undefined;
  readonly strings: readonly { slot: number; op: StrOp; values: readonly string[] }[];
  /** `arg`: the syscall argument (0-5); `wide`: a 64-bit argument (else its low 32 bits, signed). */
  readonly ints: readonly { arg: number; wide: boolean; op: IntOp; values: readonly bigint[] }[];
  readonly pids: readonly { in: boolean; values: readonly number[] }[];
  readonly namespaces: readonly { ns: NamespaceType; in: boolean; values: readonly number[] }[];
  readonly caps: readonly { type: "Effective" | "Inheritable" | "Permitted"; in: boolean; mask: bigint }[];
  /** `bit`: the binaries entry; `in`: the process's binary must match it (In, Prefix) or must not. */
  readonly binaries: readonly { bit: number; in: boolean }[];
  /** The same against the parent's (real_parent's) mask. */
  readonly parentBinaries: readonly { bit: number; in: boolean }[];
  /** `bit`: the follows entry (matchPIDs followForks); `in`: the process must descend from its PIDs or must not. */
  readonly follows: readonly { bit: number; in: boolean }[];
  /** Sigkill (9) or Signal N. */
  readonly signal: number | undefined;
  readonly post: boolean;
}

export interface GuardGroup {
  /** x86-64 syscall number. */
  readonly nr: number;
  /** The syscall argument read into each string slot. */
  readonly slots: readonly number[];
  /** The slot whose string events carry (the probe's first declared string argument). */
  readonly reportSlot: number | undefined;
  readonly selectors: readonly GuardSelector[];
}

export interface GuardSpec {
  readonly groups: readonly GuardGroup[];
  /** Network namespace inodes of the selected endpoints, or "node". */
  readonly scope: readonly number[] | "node";
  /** Never signalled: PID 1, the agent, and (node-wide) the agent's children. */
  readonly agentPid: number;
  /** The policy's matchBinaries entries: bit i set in a process's mask when its exec matched entry i. */
  readonly binaries: readonly { readonly prefix: boolean; readonly values: readonly string[] }[];
  /**
   * matchPIDs followForks entries: bit followBit(j) set for the listed processes (seeded at load by
   * the loader) and inherited by every fork, kept across exec.
   */
  readonly follows: readonly { readonly pids: readonly number[] }[];
  /** Whether some selector reads the parent's mask (matchParentBinaries). */
  readonly parents: boolean;
}
