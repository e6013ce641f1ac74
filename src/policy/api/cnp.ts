/**
 * CiliumNetworkPolicy / CiliumClusterwideNetworkPolicy -> PolicyResource.
 *
 *   spec (one rule) then specs[i] (more rules), in that order, as Cilium imports them.
 */
import type { PolicyKind, PolicyRef, PolicyResource, Rule } from "../types.js";
import type { Fields } from "./fields.js";
import { readMetadata } from "./metadata.js";
import { readRule } from "./rule.js";

export const CILIUM_FIELDS = ["apiVersion", "kind", "metadata", "spec", "specs", "status"];

export function readCiliumPolicy(
  doc: Fields,
  kind: Exclude<PolicyKind, "NetworkPolicy">,
  meshAuth: boolean,
): PolicyResource | undefined {
  const clusterwide = kind === "CiliumClusterwideNetworkPolicy";
  const meta = readMetadata(doc, kind);
  const v = doc.self;
  const before = v.ctx.problems.length;
  const ref: PolicyRef = {
    kind,
    name: meta?.name ?? "",
    ...(meta?.namespace !== undefined ? { namespace: meta.namespace } : {}),
  };
  const base = { policy: ref, namespace: clusterwide ? undefined : (meta?.namespace ?? "default"), meshAuth };
  const rules: Rule[] = [];
  const spec = doc.get("spec");
  const specs = doc.get("specs");
  if (!spec && !specs) v.error(`a ${kind} needs "spec" (one rule) or "specs" (a list of rules)`);
  if (spec) {
    const r = readRule(spec, base);
    if (r) rules.push(r);
  }
  for (const item of specs?.list() ?? []) {
    const r = readRule(item, base);
    if (r) rules.push(r);
  }
  if (!meta || v.ctx.problems.length > before) return undefined;
  return { ref, rules, source: { file: v.ctx.file, line: v.line }, audit: meta.audit };
}
