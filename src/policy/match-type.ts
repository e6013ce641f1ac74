/**
 * Hubble's policy_match_type (L3-Only, L3-L4, L4-Only, all, none) of a verdict: the kind of the
 * most specific MapState entry that matched. Used by decide.ts and by the flow enricher.
 */
import type { MapStateEntry } from "./mapstate.js";
import type { PolicyEngine } from "./engine.js";
import type { DirectionDecision } from "./query.js";

/**
 * Hubble's policy_match_type of a connection to/from an endpoint, as the kernel's lookup finds it:
 * the kind of the most specific entry of the endpoint's MapState matching (remote identity,
 * protocol, port); "none" when nothing matches; undefined for an endpoint the engine lacks.
 */
export function matchTypeAt(
  engine: PolicyEngine,
  endpoint: { readonly namespace: string; readonly name: string },
  direction: "ingress" | "egress",
  remote: number,
  proto: number,
  port: number,
): DirectionDecision["matchType"] | undefined {
  if (!engine.getEndpoint(endpoint.namespace, endpoint.name)) return undefined;
  const r = engine
    .endpointPolicy(endpoint.namespace, endpoint.name)
    [direction].mapState.lookup(remote, proto, port);
  return r.verdict === "none" ? "none" : matchType(r.entries);
}

/** Hubble's policy_match_type of the entries a lookup matched: the most specific one's kind. */
export function matchType(entries: readonly MapStateEntry[]): DirectionDecision["matchType"] {
  const e = [...entries].sort((a, b) => specificity(b) - specificity(a))[0];
  if (!e) return "none";
  if (e.identity !== 0) return e.proto === 0 ? "L3-Only" : "L3-L4";
  return e.proto === 0 ? "all" : "L4-Only";
}

function specificity(e: MapStateEntry): number {
  return (e.identity !== 0 ? 2 : 0) + (e.proto !== 0 ? 1 : 0);
}
