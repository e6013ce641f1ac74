/**
 * Item 5 of issue 15: a kill that is not narrowed is refused.
 *
 * A selector with Sigkill, Signal or Override (a denied file access, which
 * can stop the node's own work as surely as a kill) must be narrowed twice:
 *  - to workloads: the policy has a podSelector (or is a
 *    TracingPolicyNamespaced). Otherwise it would see every process of the
 *    node, the agent and PID 1 included;
 *  - within them: at least one of matchArgs, matchBinaries (In/Prefix/Postfix),
 *    matchPIDs In, matchNamespaces In or matchCapabilities In. Otherwise every
 *    call of the hook kills (a Sigkill on openat kills every process that
 *    opens anything).
 * The annotation `membrane.io/allow-unsafe-kill: "true"` accepts both. Even
 * then the enforcer never signals PID 1, the agent or its own bpftrace
 * (enforce/script.ts puts them in every kill predicate).
 */
import type { TracingPolicy, TracingSelector } from "./types.js";

export const ALLOW_UNSAFE_KILL_ANNOTATION = "membrane.io/allow-unsafe-kill";

export interface SafetyProblem {
  readonly path: string;
  readonly message: string;
}

/** A kill, or an Override (a denied file access): both can stop the node's own work if not narrowed. */
function kills(s: TracingSelector): boolean {
  return s.actions.some((a) => a.action === "Sigkill" || a.action === "Signal" || a.action === "Override");
}

function narrowed(s: TracingSelector): boolean {
  return (
    s.matchArgs.length > 0 ||
    s.matchBinaries.some((b) => b.operator === "In" || b.operator === "Prefix") ||
    s.matchParentBinaries.some((b) => b.operator === "In" || b.operator === "Prefix") ||
    s.matchPIDs.some((p) => p.operator === "In") ||
    s.matchNamespaces.some((n) => n.operator === "In") ||
    s.matchCapabilities.some((c) => c.operator === "In")
  );
}

export function safetyProblems(p: TracingPolicy): SafetyProblem[] {
  if (p.allowUnsafeKill) return [];
  const out: SafetyProblem[] = [];
  for (const probe of p.probes)
    for (const s of probe.selectors) {
      if (!kills(s)) continue;
      if (p.podSelector === undefined)
        out.push({
          path: `${s.path}.matchActions`,
          message: `a kill in a TracingPolicy without spec.podSelector can hit any process of the node (the agent, PID 1): add spec.podSelector (or use a TracingPolicyNamespaced), or set the annotation ${ALLOW_UNSAFE_KILL_ANNOTATION}: "true"`,
        });
      else if (!narrowed(s))
        out.push({
          path: `${s.path}.matchActions`,
          message: `a kill with no matchArgs, matchBinaries, matchPIDs In, matchNamespaces In or matchCapabilities In kills every call of ${probe.functionName} in the selected endpoints: narrow the selector, or set the annotation ${ALLOW_UNSAFE_KILL_ANNOTATION}: "true"`,
        });
    }
  return out;
}
