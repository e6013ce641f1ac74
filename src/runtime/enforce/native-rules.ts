/**
 * Which of a policy's probes the syscall guard serves (its own raw
 * tracepoint program, kill-prog.ts) and which stay with bpftrace, and the
 * guard's records back into policy events. Pure.
 *
 *   TracingPolicy probes --splitProbes--> native (syscall hooks) | bpftrace (the rest)
 *   native probes + scope --guardSpec--> GuardSpec + rule table --(records)--> RuntimePolicyEvent
 *
 * Served natively: every probe whose attach points are all
 * `syscalls:sys_enter_<name>` of a syscall in our table (syscall kprobes,
 * the file hooks security_file_permission/security_file_open/fd_install,
 * security_bprm_check, and `syscalls` tracepoints), with any of matchArgs
 * (string Equal/NotEqual/Prefix/NotPrefix/Postfix/NotPostfix on path
 * arguments; integer Equal/NotEqual/GT/LT/Mask), matchBinaries,
 * matchParentBinaries, matchPIDs (followForks too), matchNamespaces,
 * matchCapabilities and matchActions Post/NoPost/Sigkill/
 * Signal (Override selectors are fanotify's: they decide and post nothing).
 * Left to bpftrace: tracepoints other than syscalls (sched_process_exec,
 * capability:cap_capable, sock:inet_sock_set_state, raw_syscalls:sys_enter),
 * node-wide tcp_connect and cap_capable kprobes (they are served from those),
 * selectors on a tracepoint's `__syscall_nr` field, more than two string
 * arguments in one probe, more than 32 mask bits in one policy (matchBinaries,
 * matchParentBinaries and followForks entries).
 */
import type { AttachPoint, TracingPolicy, TracingProbe, TracingSelector } from "../policy/types.js";
import { syscallArgs } from "../policy/syscalls.js";
import type { PolicyEventArg, RuntimePolicyEvent } from "./events.js";
import type { GuardGroup, GuardSelector, GuardSpec } from "./kill-spec.js";
import { followBit, MAX_BINARIES, STR_SLOTS } from "./kill-spec.js";
import type { KillRecord } from "./kill-record.js";
import type { ScriptGuards } from "./script.js";
import { syscallNumber } from "./syscall-numbers.js";

/** 64-bit syscall arguments (long, unsigned long, size_t): compared whole; the others on their low 32 bits. */
const WIDE = new Set([
  "ptrace.request",
  "ptrace.pid",
  "ptrace.addr",
  "ptrace.data",
  "truncate.length",
  "ftruncate.length",
  "read.count",
  "write.count",
  "prctl.arg2",
  "prctl.arg3",
  "prctl.arg4",
  "prctl.arg5",
  "mount.flags",
  "perf_event_open.flags",
]);

interface Arg {
  readonly syscall: string;
  readonly nr: number;
  /** Tetragon index -> argument position (0-5) and kind. */
  readonly pos: ReadonlyMap<number, { pos: number; kind: "ustr" | "int"; wide: boolean }>;
}

/** The syscall behind an attach point, when the guard can serve it. */
function syscallOf(a: AttachPoint): Arg | undefined {
  const m = /^syscalls:sys_enter_([a-z0-9_]+)$/.exec(a.tracepoint);
  const name = m?.[1];
  if (name === undefined || a.guard !== undefined) return undefined;
  const nr = syscallNumber(name);
  const fields = syscallArgs(name);
  if (nr === undefined || fields === undefined) return undefined;
  const pos = new Map<number, { pos: number; kind: "ustr" | "int"; wide: boolean }>();
  for (const [index, src] of a.args) {
    if (src.field === "__syscall_nr") continue;
    const p = fields.findIndex(([f]) => f === src.field);
    if (p < 0 || (src.kind !== "ustr" && src.kind !== "int")) return undefined;
    pos.set(index, { pos: p, kind: src.kind, wide: WIDE.has(`${name}.${src.field}`) });
  }
  return { syscall: name, nr, pos };
}

const isOverride = (s: TracingSelector): boolean => s.actions.some((x) => x.action === "Override");

/** Whether the guard can serve `probe` on every one of its attach points. */
export function nativeServes(probe: TracingProbe): boolean {
  if (probe.connect !== undefined && probe.attach.length === 0) return false;
  if (probe.selectors.length > 0 && probe.selectors.every(isOverride)) return true;
  return probe.attach.every((a) => {
    const sc = syscallOf(a);
    if (!sc) return false;
    const strs = new Set<number>();
    const reported = probe.args.find((x) => sc.pos.get(x.index)?.kind === "ustr");
    if (reported) strs.add(reported.index);
    for (const s of probe.selectors)
      for (const m of s.matchArgs) {
        if (!a.args.has(m.index)) continue; // this selector cannot match here: fine
        const p = sc.pos.get(m.index);
        if (!p) return false; // __syscall_nr
        if (m.kind === "string" || m.kind === "suffix") {
          if (p.kind !== "ustr") return false;
          strs.add(m.index);
        } else if (
          m.kind !== "int" ||
          p.kind !== "int" ||
          !["Equal", "NotEqual", "GT", "LT", "Mask"].includes(m.operator)
        )
          return false;
      }
    return strs.size <= STR_SLOTS;
  });
}

/** Splits a policy's probes: those the guard serves, and the rest (bpftrace). */
export function splitProbes(probes: readonly TracingProbe[]): {
  native: TracingProbe[];
  other: TracingProbe[];
} {
  // Mask bits a probe may take: one per binaries entry (own or parent's), one per followForks entry.
  const binaries = (p: TracingProbe): number =>
    p.selectors.reduce(
      (n, s) =>
        n +
        s.matchBinaries.length +
        s.matchParentBinaries.length +
        s.matchPIDs.filter((x) => x.followForks).length,
      0,
    );
  const native: TracingProbe[] = [];
  const other: TracingProbe[] = [];
  let bits = 0;
  for (const p of probes) {
    if (nativeServes(p) && bits + binaries(p) <= MAX_BINARIES) {
      native.push(p);
      bits += binaries(p);
    } else other.push(p);
  }
  return { native, other };
}

export interface GuardRule {
  readonly probe: TracingProbe;
  readonly attach: AttachPoint;
  readonly arg: Arg;
  readonly action: RuntimePolicyEvent["action"];
  readonly signal: number | undefined;
  /** The declared string argument events carry. */
  readonly strArg: number | undefined;
}

/** The guard's program spec for `probes` (all nativeServes) in `scope`, and its rule table (rule id = index). */
export function guardSpec(
  probes: readonly TracingProbe[],
  scope: readonly number[] | "node",
  guards: ScriptGuards,
): { spec: GuardSpec; rules: GuardRule[] } {
  const rules: GuardRule[] = [];
  const groups: GuardGroup[] = [];
  const binaries: { prefix: boolean; values: readonly string[] }[] = [];
  const follows: { pids: readonly number[] }[] = [];
  const bitOf = new Map<string, number>();
  const follow = (pids: readonly number[]): number => {
    follows.push({ pids });
    return followBit(follows.length - 1);
  };
  for (const probe of probes) {
    if (probe.selectors.length > 0 && probe.selectors.every(isOverride)) continue;
    for (const a of probe.attach) {
      const arg = syscallOf(a);
      if (!arg) throw new Error(`internal: ${a.tracepoint} is not served by the syscall guard`);
      const strArg = probe.args.find((x) => arg.pos.get(x.index)?.kind === "ustr")?.index;
      const slotArgs: number[] = [];
      const slotOf = (index: number): number => {
        const pos = arg.pos.get(index)?.pos ?? 0;
        const i = slotArgs.indexOf(pos);
        if (i >= 0) return i;
        slotArgs.push(pos);
        return slotArgs.length - 1;
      };
      const reportSlot = strArg === undefined ? undefined : slotOf(strArg);
      const selectors: GuardSelector[] = [];
      const sels: (TracingSelector | undefined)[] =
        probe.selectors.length === 0 ? [undefined] : [...probe.selectors];
      for (const s of sels) {
        // A selector on an argument this attach point lacks never matches here (as the bpftrace path).
        if (s?.matchArgs.some((m) => !a.args.has(m.index))) continue;
        const kill = s?.actions.find((x) => x.action === "Sigkill" || x.action === "Signal");
        const signal = kill === undefined ? undefined : kill.action === "Signal" ? kill.signal : 9;
        const override = s !== undefined && isOverride(s);
        let rule: number | undefined;
        if (!override) {
          rule = rules.length;
          rules.push({
            probe,
            attach: a,
            arg,
            action:
              kill === undefined
                ? "KPROBE_ACTION_POST"
                : kill.action === "Sigkill"
                  ? "KPROBE_ACTION_SIGKILL"
                  : "KPROBE_ACTION_SIGNAL",
            signal,
            strArg,
          });
        }
        selectors.push(
          s === undefined
            ? postAll(rule)
            : selectorOf(s, rule, signal, arg, slotOf, guards, follow, (b) => {
                const key = `${b.operator.includes("Prefix") ? "p" : "e"}:${b.values.join("\0")}`;
                let bit = bitOf.get(key);
                if (bit === undefined) {
                  bit = binaries.length;
                  bitOf.set(key, bit);
                  binaries.push({ prefix: b.operator.includes("Prefix"), values: b.values });
                }
                return bit;
              }),
        );
      }
      if (selectors.length > 0) groups.push({ nr: arg.nr, slots: slotArgs, reportSlot, selectors });
    }
  }
  const parents = groups.some((g) => g.selectors.some((x) => x.parentBinaries.length > 0));
  return { spec: { groups, scope, agentPid: guards.agentPid, binaries, follows, parents }, rules };
}

function postAll(rule: number | undefined): GuardSelector {
  return {
    rule,
    strings: [],
    ints: [],
    pids: [],
    namespaces: [],
    caps: [],
    binaries: [],
    parentBinaries: [],
    follows: [],
    signal: undefined,
    post: true,
  };
}

function selectorOf(
  s: TracingSelector,
  rule: number | undefined,
  signal: number | undefined,
  arg: Arg,
  slotOf: (index: number) => number,
  guards: ScriptGuards,
  follow: (pids: readonly number[]) => number,
  bit: (b: TracingSelector["matchBinaries"][number]) => number,
): GuardSelector {
  const strings: GuardSelector["strings"][number][] = [];
  const ints: GuardSelector["ints"][number][] = [];
  for (const m of s.matchArgs) {
    if (m.kind === "string" || m.kind === "suffix")
      strings.push({ slot: slotOf(m.index), op: m.operator, values: m.values });
    else if (m.kind === "int") {
      const p = arg.pos.get(m.index);
      const op = m.operator as "Equal" | "NotEqual" | "GT" | "LT" | "Mask";
      ints.push({ arg: p?.pos ?? 0, wide: p?.wide ?? false, op, values: m.values });
    }
  }
  return {
    rule,
    strings,
    ints,
    pids: s.matchPIDs
      .filter((p) => !p.followForks)
      .map((p) => ({ in: p.operator === "In", values: p.values })),
    follows: s.matchPIDs
      .filter((p) => p.followForks)
      .map((p) => ({ bit: follow(p.values), in: p.operator === "In" })),
    namespaces: s.matchNamespaces.map((n) => ({
      ns: n.namespace,
      in: n.operator === "In",
      // host_ns unknown (PID 1's namespace unreadable): 0, which no namespace has.
      values: n.values.map((x) => (x === "host_ns" ? (guards.hostNamespaces[n.namespace] ?? 0) : x)),
    })),
    caps: s.matchCapabilities.map((c) => ({
      type: c.type,
      in: c.operator === "In",
      mask: c.values.reduce((m, v) => m | (1n << BigInt(v)), 0n),
    })),
    binaries: s.matchBinaries.map((b) => ({
      bit: bit(b),
      in: b.operator === "In" || b.operator === "Prefix",
    })),
    parentBinaries: s.matchParentBinaries.map((b) => ({
      bit: bit(b),
      in: b.operator === "In" || b.operator === "Prefix",
    })),
    signal,
    post: !s.actions.some((x) => x.action === "NoPost"),
  };
}

/** The policy event of a guard record; undefined when the record names no rule. */
export function guardEvent(
  r: KillRecord,
  rules: readonly GuardRule[],
  policy: Pick<TracingPolicy, "name" | "namespace">,
  now: Date,
): RuntimePolicyEvent | undefined {
  const rule = rules[r.rule];
  if (!rule) return undefined;
  const args: PolicyEventArg[] = rule.probe.args.map((d) => {
    const p = rule.arg.pos.get(d.index);
    let value: string | undefined;
    if (d.index === rule.strArg) value = r.str;
    else if (p?.kind === "int") {
      const raw = r.args[p.pos] ?? 0n;
      value = (p.wide ? BigInt.asIntN(64, raw) : BigInt.asIntN(32, raw)).toString();
    } else if (rule.attach.args.get(d.index)?.field === "__syscall_nr") value = String(rule.arg.nr);
    return { index: d.index, type: d.type, label: d.label, value };
  });
  return {
    type: rule.probe.hook === "kprobe" ? "process_kprobe" : "process_tracepoint",
    policyName: policy.name,
    policyNamespace: policy.namespace,
    functionName: rule.probe.functionName,
    // An exempt process (PID 1, the agent) was matched but not signalled: reported as a Post.
    action: r.signalled ? rule.action : "KPROBE_ACTION_POST",
    signal: r.signalled ? rule.signal : undefined,
    pid: r.pid,
    tid: r.tid,
    uid: r.uid,
    netnsInode: r.netns,
    cgroupId: r.cgroupId,
    ktimeNs: r.ktimeNs,
    comm: r.comm,
    args,
    message: rule.probe.message,
    tags: rule.probe.tags,
    time: now,
  };
}
