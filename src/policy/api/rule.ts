/**
 * One Cilium rule (`spec` or `specs[i]` of a CNP / CCNP) -> Rule.
 *
 *   endpointSelector | nodeSelector  -> subject (CNP: namespace injected)
 *   ingress / ingressDeny / egress / egressDeny -> RuleElement[] (element.ts)
 *   enableDefaultDeny                -> defaultDeny per direction
 */
import type { Direction, Rule, RuleElement } from "../types.js";
import type { Val } from "./fields.js";
import { readElement } from "./element.js";
import type { Scope } from "./scope.js";
import { readSelector, scopeSubject } from "./selector.js";

const RULE_FIELDS = [
  "endpointSelector",
  "nodeSelector",
  "ingress",
  "ingressDeny",
  "egress",
  "egressDeny",
  "enableDefaultDeny",
  "labels",
  "description",
  "log",
];

export function readRule(v: Val, base: Omit<Scope, "hostPolicy" | "description">): Rule | undefined {
  const m = v.map(RULE_FIELDS);
  if (!m) return undefined;
  const before = v.ctx.problems.length;
  const clusterwide = base.namespace === undefined;

  const epVal = m.get("endpointSelector");
  const nodeVal = m.get("nodeSelector");
  if ((epVal === undefined) === (nodeVal === undefined)) {
    v.error("give exactly one of endpointSelector or nodeSelector");
  }
  if (nodeVal && !clusterwide) {
    nodeVal.error("nodeSelector is only allowed in a CiliumClusterwideNetworkPolicy");
  }
  const selVal = epVal ?? nodeVal;
  const selector = selVal && readSelector(selVal);

  const descVal = m.get("description");
  const description = descVal?.str();
  readRuleLabels(m.get("labels"));
  readLog(m.get("log"));

  const scope: Scope = {
    ...base,
    hostPolicy: nodeVal !== undefined && epVal === undefined,
    ...(description !== undefined ? { description } : {}),
  };
  const lists = {
    ingress: readElements(m.get("ingress"), scope, "ingress", false),
    ingressDeny: readElements(m.get("ingressDeny"), scope, "ingress", true),
    egress: readElements(m.get("egress"), scope, "egress", false),
    egressDeny: readElements(m.get("egressDeny"), scope, "egress", true),
  };

  const dd = m.get("enableDefaultDeny")?.map(["ingress", "egress"]);
  const ddIngress = dd?.get("ingress")?.bool();
  const ddEgress = dd?.get("egress")?.bool();

  if (!selector || v.ctx.problems.length > before) return undefined;
  const subject = scope.hostPolicy ? selector : scopeSubject(selector, base.namespace);
  return {
    policy: base.policy,
    path: v.rel,
    subject,
    selectsNodes: scope.hostPolicy,
    ...lists,
    defaultDeny: {
      ingress: ddIngress !== false && lists.ingress.length + lists.ingressDeny.length > 0,
      egress: ddEgress !== false && lists.egress.length + lists.egressDeny.length > 0,
    },
    ...(description !== undefined ? { description } : {}),
  };
}

function readElements(v: Val | undefined, s: Scope, dir: Direction, deny: boolean): RuleElement[] {
  const out: RuleElement[] = [];
  for (const item of v?.list() ?? []) {
    const e = readElement(item, { ...s, dir, deny });
    if (e) out.push(e);
  }
  return out;
}

/** Rule labels (`[{key, value?, source?}]`): metadata only, checked for shape. */
function readRuleLabels(v: Val | undefined): void {
  for (const item of v?.list() ?? []) {
    const m = item.map(["key", "value", "source"]);
    m?.need("key")?.str();
    m?.get("value")?.str();
    m?.get("source")?.str();
  }
}

/** `log: "text"` or `log: {value: "text"}`: at most 32 printable characters; not used by Membrane. */
function readLog(v: Val | undefined): void {
  if (v === undefined) return;
  const text = v.kind === "mapping" ? v.map(["value"])?.get("value")?.str() : v.str();
  if (text !== undefined && (text.length > 32 || !/^[\x20-\x7e]*$/.test(text))) {
    v.error("log must be at most 32 printable ASCII characters");
  }
}
