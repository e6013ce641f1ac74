/**
 * The policy side of a flow (enrich.ts): the *_allowed_by / *_denied_by entry of the rule that
 * decided, and Hubble's drop reason with Membrane's words for it.
 */
import type { DropReason } from "../abi/log-prefix.js";
import type { DropReasonName, Flow, PolicyRefJSON } from "./flow.js";
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
  rule: RuleView | undefined,
  ingress: boolean,
): { reason: Exclude<DropReasonName, "DROP_REASON_UNKNOWN">; detail: string } {
  switch (r.kind) {
    case "rule":
      return {
        reason: "POLICY_DENY",
        detail:
          rule !== undefined
            ? rule.denyDetail
            : r.ruleId === 0
              ? "denied by a deny rule"
              : `denied by deny rule #${r.ruleId} (no longer known to the agent)`,
      };
    case "default":
      return {
        reason: "POLICY_DENIED",
        detail: ingress
          ? "default deny: no ingress policy allows it"
          : "default deny: no egress policy allows it",
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

/** What flows show of one rule, built once per rule (and again when the agent's answer changes). */
export interface RuleView {
  readonly info: RuleInfo;
  /** The *_allowed_by / *_denied_by list (shared by its flows: read-only). */
  readonly by: readonly PolicyRefJSON[];
  /** Membrane's `rule` field. */
  readonly rule: NonNullable<Flow["rule"]>;
  /** The drop detail when it denied. */
  readonly denyDetail: string;
}

const sameRule = (a: RuleInfo, b: RuleInfo): boolean =>
  a === b ||
  (a.path === b.path &&
    a.revision === b.revision &&
    a.matchType === b.matchType &&
    a.policy.kind === b.policy.kind &&
    a.policy.name === b.policy.name &&
    a.policy.namespace === b.policy.namespace);

/**
 * Rule id -> RuleView. The agent answers ruleById with a new RuleInfo per call; rebuilding the
 * policy labels, the *_by list and the detail text per flow was garbage that lived in the ring.
 */
export class RuleViews {
  private readonly byId = new Map<number, RuleView>();

  get(id: number, info: RuleInfo): RuleView {
    const c = this.byId.get(id);
    if (c !== undefined && sameRule(c.info, info)) return c;
    if (this.byId.size >= 65536) this.byId.clear();
    const p = info.policy;
    const v: RuleView = {
      info,
      by: Object.freeze([policyJSON(info)]),
      rule: Object.freeze(
        p.namespace === undefined
          ? { kind: p.kind, name: p.name, path: info.path }
          : { kind: p.kind, name: p.name, namespace: p.namespace, path: info.path },
      ),
      denyDetail: `denied by ${policyName(info)} ${info.path}`,
    };
    this.byId.set(id, v);
    return v;
  }
}
