/**
 * The policy side of a flow (enrich.ts): the *_allowed_by / *_denied_by entry of the rule that
 * decided, and Hubble's drop reason with Membrane's words for it.
 */
import type { DropReason } from "../abi/log-prefix.js";
import type { DropReasonName, PolicyRefJSON } from "./flow.js";
import type { RuleInfo } from "./flow-lookups.js";

const policyJSONs = new WeakMap<RuleInfo, PolicyRefJSON>();

/** The *_by entry of a rule; one object per RuleInfo (shared by its flows: read-only). */
export function policyJSON(r: RuleInfo): PolicyRefJSON {
  const cached = policyJSONs.get(r);
  if (cached !== undefined) return cached;
  const p = r.policy;
  const labels = [
    `k8s:io.cilium.k8s.policy.derived-from=${p.kind}`,
    `k8s:io.cilium.k8s.policy.name=${p.name}`,
    ...(p.namespace === undefined ? [] : [`k8s:io.cilium.k8s.policy.namespace=${p.namespace}`]),
  ];
  const out: PolicyRefJSON = {
    name: p.name,
    ...(p.namespace === undefined ? {} : { namespace: p.namespace }),
    kind: p.kind,
    labels,
    ...(r.revision === undefined ? {} : { revision: r.revision }),
  };
  policyJSONs.set(r, out);
  return out;
}

const policyName = (r: RuleInfo): string =>
  r.policy.namespace === undefined ? r.policy.name : `${r.policy.namespace}/${r.policy.name}`;

/** Hubble's drop reason and Membrane's words for a drop prefix. */
export function dropReason(
  r: DropReason,
  rule: RuleInfo | undefined,
  ingress: boolean,
): { reason: Exclude<DropReasonName, "DROP_REASON_UNKNOWN">; detail: string } {
  switch (r.kind) {
    case "rule":
      return {
        reason: "POLICY_DENY",
        detail:
          rule !== undefined
            ? `denied by ${policyName(rule)} ${rule.path}`
            : r.ruleId === 0
              ? "denied by a deny rule"
              : `denied by deny rule #${r.ruleId} (no longer known to the agent)`,
      };
    case "default":
      return {
        reason: "POLICY_DENIED",
        detail: `default deny: no ${ingress ? "ingress" : "egress"} policy allows it`,
      };
    case "spoof":
      return {
        reason: "INVALID_SOURCE_IP",
        detail: "spoofed source: the source address is not the endpoint's own",
      };
    case "unencrypted":
      return {
        reason: "UNENCRYPTED_TRAFFIC",
        detail: "strict encryption: traffic to another node's pod would have left unencrypted",
      };
    case "invalid":
      return {
        reason: "INVALID_PACKET_DROPPED",
        detail: "invalid packet: conntrack state invalid (no connection it belongs to)",
      };
    case "auth":
      return {
        reason: "AUTH_REQUIRED",
        detail:
          "mutual authentication required: the pair has no authenticated entry and no handshake succeeded (see the agent's log for why)",
      };
  }
}
