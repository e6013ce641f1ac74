/** `metadata` of a Gateway API or Ingress document. */
import { Fields, K8S_NAME } from "./fields.js";
import type { Meta } from "./model.js";

export function parseMeta(v: unknown, f: Fields, namespaced: boolean): Meta | undefined {
  const m = f.obj(v, "metadata");
  if (!m) return f.fail("metadata", "is required");
  const name = f.str(m["name"], "metadata.name", true);
  if (name !== undefined && !K8S_NAME.test(name))
    f.fail("metadata.name", `${JSON.stringify(name)} is not a Kubernetes name`);
  const namespace = namespaced ? (f.str(m["namespace"], "metadata.namespace") ?? "default") : "";
  if (namespace !== "" && !K8S_NAME.test(namespace))
    f.fail("metadata.namespace", `${JSON.stringify(namespace)} is not a Kubernetes name`);
  const generation = f.int(m["generation"], "metadata.generation", 0, Number.MAX_SAFE_INTEGER) ?? 1;
  const created = m["creationTimestamp"];
  const creationTimestamp =
    created instanceof Date ? created.toISOString() : f.str(created, "metadata.creationTimestamp");
  if (name === undefined) return undefined;
  return { name, namespace, generation, ...(creationTimestamp !== undefined ? { creationTimestamp } : {}) };
}

/**
 * The generation a re-applied resource gets, as the API server keeps
 * `metadata.generation`: unchanged when the resource is the same but for it,
 * else one more than the stored one (or the file's own, when higher). Status
 * conditions carry it as observedGeneration.
 */
export function nextGeneration<T extends { readonly meta: Meta }>(next: T, old: T | undefined): T {
  if (!old) return next;
  const bare = (r: T): string => JSON.stringify({ ...r, meta: { ...r.meta, generation: 0 } });
  const generation =
    bare(next) === bare(old) ? old.meta.generation : Math.max(next.meta.generation, old.meta.generation + 1);
  return { ...next, meta: { ...next.meta, generation } };
}
