/**
 * The host's own policy: only host-firewall (nodeSelector) rules select the
 * host, and `policyEnforcementMode: always` applies to workload endpoints
 * only, as in Cilium without the host firewall. Pure: the engine hands in
 * its resolve context, its host rules and the host identity.
 */
import type { Identity } from "../identity/allocator.js";
import { resolveDirection, type DirectionPolicy, type ResolveContext } from "./resolve.js";
import type { Rule } from "./types.js";

export interface HostPolicy {
  readonly ingress: DirectionPolicy;
  readonly egress: DirectionPolicy;
}

export function hostPolicyOf(base: ResolveContext, selecting: readonly Rule[], host: Identity): HostPolicy {
  const mode = base.config.policyEnforcementMode === "never" ? "never" : "default";
  const ctx: ResolveContext = { ...base, config: { ...base.config, policyEnforcementMode: mode } };
  const subject = { identity: host, namedPorts: [] };
  return {
    ingress: resolveDirection(ctx, subject, selecting, "ingress"),
    egress: resolveDirection(ctx, subject, selecting, "egress"),
  };
}
