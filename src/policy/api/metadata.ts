/** `metadata` of a policy object: name, namespace and the Membrane audit annotation. */
import type { Fields } from "./fields.js";
import { checkLabelName, checkSubdomain } from "./names.js";

export const AUDIT_ANNOTATION = "policy.membrane.io/audit";
export const DEFAULT_NAMESPACE = "default";

const METADATA_FIELDS = [
  "name",
  "namespace",
  "labels",
  "annotations",
  // Written by the API server; accepted so `kubectl get -o yaml` output can be applied.
  "uid",
  "resourceVersion",
  "creationTimestamp",
  "generation",
  "managedFields",
  "ownerReferences",
  "finalizers",
  "selfLink",
  "deletionTimestamp",
  "deletionGracePeriodSeconds",
];

export interface Metadata {
  readonly name: string;
  /** Undefined for a clusterwide policy. */
  readonly namespace: string | undefined;
  readonly audit: boolean;
}

export function readMetadata(doc: Fields, clusterwide: boolean): Metadata | undefined {
  const m = doc.need("metadata")?.map(METADATA_FIELDS);
  if (!m) return undefined;
  const before = m.self.ctx.problems.length;
  const nameVal = m.need("name");
  const name = nameVal?.str();
  if (name !== undefined) {
    const bad = checkSubdomain(name);
    if (bad) nameVal?.error(bad);
  }
  const nsVal = m.get("namespace");
  let namespace: string | undefined = clusterwide ? undefined : DEFAULT_NAMESPACE;
  if (nsVal && clusterwide) {
    nsVal.error("a CiliumClusterwideNetworkPolicy has no namespace; remove metadata.namespace");
  } else if (nsVal) {
    namespace = nsVal.str();
    const bad = namespace === undefined ? undefined : checkLabelName(namespace);
    if (bad) nsVal.error(bad);
  }
  for (const [, v] of m.get("labels")?.entries() ?? []) if (v.kind !== "null") v.str();
  let audit = false;
  for (const [k, v] of m.get("annotations")?.entries() ?? []) {
    const text = v.kind === "null" ? "" : v.str();
    if (k !== AUDIT_ANNOTATION || text === undefined) continue;
    if (text === "true") audit = true;
    else if (text !== "false") v.error(`annotation ${AUDIT_ANNOTATION} must be "true" or "false"`);
  }
  if (name === undefined || m.self.ctx.problems.length > before) return undefined;
  return { name, namespace, audit };
}
