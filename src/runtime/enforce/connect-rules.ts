/**
 * A policy's connect hooks as connect-guard rules, and the guard's events as
 * policy events. Pure.
 *
 *   TracingProbe (connect hook) --connectRules--> ConnectRule[] (+ which probe/selector each is)
 *   ConnectEvent --connectEventToPolicy--> RuntimePolicyEvent (process_kprobe, function_name as written)
 *
 * One rule per selector, in order, the first that matches decides (as the
 * bpftrace rules do); a probe without selectors posts every connect. The
 * rules of every connect probe of a policy share one program, so a connect
 * that a rule of the first probe decides is not seen by the second.
 */
import type {
  AddrOperator,
  ArgMatch,
  TracingPolicy,
  TracingProbe,
  TracingSelector,
} from "../policy/types.js";
import type { ConnectEvent } from "./connect-guard.js";
import type { ConnectMatch, ConnectRule } from "./connect-prog.js";
import type { PolicyEventArg, RuntimePolicyEvent } from "./events.js";

export interface ConnectRuleOrigin {
  readonly probe: TracingProbe;
  readonly selector: TracingSelector | undefined;
}

export interface CompiledConnect {
  readonly rules: readonly ConnectRule[];
  readonly origins: readonly ConnectRuleOrigin[];
}

function toMatch(m: ArgMatch): ConnectMatch | undefined {
  if (m.kind === "family") return { kind: "family", families: m.values.map((f) => (f === 2 ? 4 : 6)) };
  if (m.kind === "addr") {
    const op: AddrOperator = m.operator;
    return { kind: "daddr", not: op.startsWith("Not"), cidrs: m.values };
  }
  if (m.kind === "int" && /^(Not)?[DS]Port$/.test(m.operator))
    return { kind: "dport", not: m.operator.startsWith("Not"), ports: m.values.map(Number) };
  return undefined; // refused at parse (connect.ts)
}

function rule(probe: TracingProbe, s: TracingSelector | undefined): ConnectRule {
  const actions = s?.actions ?? [];
  const kill = actions.some((a) => a.action === "Sigkill");
  return {
    tcpOnly: probe.connect?.tcpOnly ?? true,
    matches: (s?.matchArgs ?? []).map(toMatch).filter((m): m is ConnectMatch => m !== undefined),
    post: !actions.some((a) => a.action === "NoPost"),
    deny: kill || actions.some((a) => a.action === "Override"),
    kill,
  };
}

/** The connect probes of a policy served on endpoints (a podSelector); empty for a node-wide policy. */
export function connectProbes(p: TracingPolicy): TracingProbe[] {
  return p.podSelector === undefined ? [] : p.probes.filter((x) => x.connect !== undefined);
}

export function connectRules(probes: readonly TracingProbe[]): CompiledConnect {
  const rules: ConnectRule[] = [];
  const origins: ConnectRuleOrigin[] = [];
  for (const probe of probes) {
    const sels = probe.selectors.length === 0 ? [undefined] : probe.selectors;
    for (const s of sels) {
      rules.push(rule(probe, s));
      origins.push({ probe, selector: s });
    }
  }
  return { rules, origins };
}

export interface ConnectEventContext {
  readonly policyName: string;
  readonly policyNamespace: string | undefined;
  readonly origins: readonly ConnectRuleOrigin[];
  /** cgroup id -> network namespace inode of the endpoint it belongs to. */
  readonly netnsOfCgroup: ReadonlyMap<string, number>;
  readonly now: Date;
}

export function connectEventToPolicy(
  e: ConnectEvent,
  c: ConnectEventContext,
): RuntimePolicyEvent | undefined {
  const o = c.origins[e.rule];
  if (!o) return undefined;
  const family = e.family === 4 ? "AF_INET" : "AF_INET6";
  const args: PolicyEventArg[] = o.probe.args.map((a) => {
    const base = { index: a.index, type: a.type, label: a.label, value: undefined };
    if (o.probe.functionName === "tcp_connect" && a.index === 0)
      return { ...base, sock: { family, protocol: "IPPROTO_TCP", daddr: e.address, dport: e.port } };
    if (a.index === 1 && o.probe.functionName === "security_socket_connect")
      return { ...base, sockaddr: { family, addr: e.address, port: e.port } };
    return base;
  });
  return {
    type: "process_kprobe",
    policyName: c.policyName,
    policyNamespace: c.policyNamespace,
    functionName: o.probe.functionName,
    action: e.killed ? "KPROBE_ACTION_SIGKILL" : e.denied ? "KPROBE_ACTION_OVERRIDE" : "KPROBE_ACTION_POST",
    signal: e.killed ? 9 : undefined,
    pid: e.pid,
    tid: e.tid,
    uid: e.uid,
    comm: e.comm,
    netnsInode: c.netnsOfCgroup.get(e.cgroupId) ?? 0,
    cgroupId: e.cgroupId,
    args,
    message: o.probe.message,
    tags: o.probe.tags,
    ktimeNs: e.ktimeNs,
    time: c.now,
  };
}
