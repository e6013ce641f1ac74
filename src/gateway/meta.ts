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
