/**
 * Label selectors as users write them (`matchLabels`, `matchExpressions`),
 * and Cilium's namespace scoping of them (semantics §3).
 */
import { isMembraneError } from "../../errors.js";
import { NAMESPACE_LABELS_PREFIX, POD_NAMESPACE_LABEL } from "../../labels/k8s.js";
import { type LabelSelectorSpec, type Requirement, Selector } from "../../labels/selector.js";
import type { Val } from "./fields.js";

/** Reads a LabelSelector; every malformed key, operator or value is reported at its own line. */
export function readSelector(v: Val): Selector | undefined {
  const m = v.map(["matchLabels", "matchExpressions"]);
  if (!m) return undefined;
  const reqs: Requirement[] = [];
  let ok = true;
  const ml = m.get("matchLabels");
  const labels = ml?.entries();
  if (ml && !labels) ok = false;
  for (const [key, val] of labels ?? []) {
    const k = val.kind;
    const value = k === "null" ? "" : k === "number" || k === "boolean" ? undefined : val.str();
    if (value === undefined) {
      if (k === "number" || k === "boolean")
        val.error(`label values are strings; quote it: "${scalarText(val)}"`);
      ok = false;
      continue;
    }
    const r = build({ matchLabels: { [key]: value } }, val);
    if (r) reqs.push(...r.requirements);
    else ok = false;
  }
  const me = m.get("matchExpressions");
  for (const item of me?.list() ?? []) {
    const e = item.map(["key", "operator", "values"]);
    if (!e) {
      ok = false;
      continue;
    }
    const key = e.need("key")?.str();
    const operator = e.need("operator")?.str();
    const valuesVal = e.get("values");
    const values = valuesVal?.strings();
    if (key === undefined || operator === undefined || (valuesVal && !values)) {
      ok = false;
      continue;
    }
    const r = build({ matchExpressions: [{ key, operator, values: values ?? [] }] }, item);
    if (r) reqs.push(...r.requirements);
    else ok = false;
  }
  if (me && me.kind !== "list") ok = false;
  return ok ? new Selector(reqs) : undefined;
}

function scalarText(v: Val): string {
  return String((v.node as { value?: unknown } | null)?.value);
}

function build(spec: LabelSelectorSpec, at: Val): Selector | undefined {
  try {
    return Selector.fromLabelSelector(spec);
  } catch (e) {
    if (!isMembraneError(e)) throw e;
    return at.error(e.message.replace(/^Cannot /, "cannot "));
  }
}

export const NS_SOURCE = "k8s";

export function namespaceIs(ns: string): Requirement {
  return { source: NS_SOURCE, key: POD_NAMESPACE_LABEL, operator: "In", values: [ns] };
}

export const NAMESPACE_EXISTS: Requirement = {
  source: NS_SOURCE,
  key: POD_NAMESPACE_LABEL,
  operator: "Exists",
  values: [],
};

function mentionsNamespace(s: Selector): boolean {
  return s.constrains(NS_SOURCE, POD_NAMESPACE_LABEL);
}

/**
 * Subject of a namespaced policy: the policy's namespace replaces whatever the
 * user wrote for the namespace key, so a namespaced policy never selects
 * workloads of another namespace (attack-cases.md), whatever operator was used.
 */
export function scopeSubject(s: Selector, ns: string | undefined): Selector {
  if (ns === undefined) return s;
  const kept = s.requirements.filter(
    (r) => !(r.key === POD_NAMESPACE_LABEL && (r.source === NS_SOURCE || r.source === "any")),
  );
  return new Selector([...kept, namespaceIs(ns)]);
}

/** True when some requirement selects on a namespace label (`io.cilium.k8s.namespace.labels.*`). */
function selectsNamespaceLabels(s: Selector): boolean {
  return s.requirements.some(
    (r) => (r.source === NS_SOURCE || r.source === "any") && r.key.startsWith(NAMESPACE_LABELS_PREFIX),
  );
}

/**
 * Peer selector scoping: without a namespace key (and, for endpoint selectors,
 * without a `reserved:` key) a CNP peer gets the policy namespace and a CCNP
 * peer gets "some namespace" (Exists: pods only, never reserved identities).
 * A CNP peer that selects on namespace labels (`io.cilium.k8s.namespace.labels.*`)
 * already says which namespaces it means and is not narrowed to the policy's own
 * (Cilium >= 1.16, pkg/k8s/apis/cilium.io/utils getEndpointSelector: the
 * namespace is added only when the selector has no key with the `k8s:` or `any:`
 * namespace-labels prefix).
 */
export function scopePeer(s: Selector, ns: string | undefined, isRequires: boolean): Selector {
  if (mentionsNamespace(s)) return s;
  if (!isRequires && s.hasSource("reserved")) return s;
  if (ns === undefined) return s.and(NAMESPACE_EXISTS);
  if (selectsNamespaceLabels(s)) return s;
  return s.and(namespaceIs(ns));
}
