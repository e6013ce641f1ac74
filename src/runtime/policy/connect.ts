/**
 * Where a connect hook (tcp_connect, security_socket_connect) can be served,
 * checked on the whole policy (it depends on the podSelector):
 *
 *   podSelector (or namespaced) --> cgroup connect4/connect6 programs on the endpoints' cgroups:
 *                                   matchArgs on the destination (address, port, family) and
 *                                   Post, NoPost, Sigkill, Override(-1); nothing about the process
 *   node-wide                   --> tcp_connect: sock:inet_sock_set_state (translation.ts), ports only;
 *                                   security_socket_connect: nowhere (a named error)
 *
 * Pure; the problems are reported like parse problems (TRACING_POLICY_UNSUPPORTED).
 */
import type { TracingPolicy } from "./types.js";

export interface ConnectProblem {
  readonly path: string;
  readonly message: string;
  readonly unsupported: boolean;
}

const PROCESS_SELECTORS = [
  "matchBinaries",
  "matchParentBinaries",
  "matchPIDs",
  "matchNamespaces",
  "matchCapabilities",
] as const;

export function connectProblems(p: TracingPolicy): ConnectProblem[] {
  const out: ConnectProblem[] = [];
  const no = (path: string, message: string, unsupported = true): void => {
    out.push({ path, message, unsupported });
  };
  for (const probe of p.probes) {
    if (!probe.connect) continue;
    const fn = probe.functionName;
    const needScope = `${fn} is served by cgroup connect4/connect6 programs on the selected endpoints' cgroups: add spec.podSelector (or use a TracingPolicyNamespaced)`;
    const onHook = (what: string): string => `${what} on ${needScope}`;
    if (p.podSelector === undefined) {
      if (probe.attach.length === 0) {
        no(`${probe.path}.call`, needScope);
        continue;
      }
      for (const s of probe.selectors) {
        s.matchArgs.forEach((m, i) => {
          if (m.kind === "addr" || m.kind === "family")
            no(`${s.path}.matchArgs[${i}].operator`, onHook(m.operator));
        });
        s.actions.forEach((a, i) => {
          if (a.action === "Override") no(`${s.path}.matchActions[${i}].action`, onHook("Override"));
        });
      }
      continue;
    }
    for (const s of probe.selectors) {
      for (const name of PROCESS_SELECTORS)
        if (s[name].length > 0)
          no(
            `${s.path}.${name}`,
            `${name} cannot be served on ${fn} for endpoints: its cgroup connect programs see the destination (address, port, family), not the process; use matchArgs (the podSelector chooses the workloads)`,
          );
      s.matchArgs.forEach((m, i) => {
        if (m.kind !== "int") return;
        if (fn === "tcp_connect" && m.operator.endsWith("SPort"))
          no(
            `${s.path}.matchArgs[${i}].operator`,
            `${m.operator} cannot be matched at connect(): the source port is not chosen yet (use DPort)`,
          );
        else if (m.values.some((v) => v < 0n || v > 65535n))
          no(`${s.path}.matchArgs[${i}].values`, `ports are 0..65535`, false);
      });
      s.actions.forEach((a, i) => {
        if (a.action === "Signal")
          no(
            `${s.path}.matchActions[${i}].action`,
            `Signal is not served on ${fn} for endpoints: the connect() is refused (Override) or the process killed (Sigkill)`,
          );
      });
    }
  }
  return out;
}
