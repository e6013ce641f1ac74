/** `metadata` of a policy object: name, namespace and the Membrane audit annotation. */
import type { PolicyKind } from "../types.js";
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

/**
 * The hint for a `description` written outside `spec` (top level or under
 * metadata), where users often put it: it is a field of a Cilium rule.
 */
export function misplacedDescription(kind: PolicyKind): (key: string) => string | undefined {
  return (key) =>
    key !== "description"
      ? undefined
      : kind === "NetworkPolicy"
        ? "; a NetworkPolicy has no description; put it in metadata.annotations"
        : "; description belongs under spec (spec.description, or specs[i].description)";
}

export function readMetadata(doc: Fields, kind: PolicyKind): Metadata | undefined {
  const clusterwide = kind === "CiliumClusterwideNetworkPolicy";
  const m = doc.need("metadata")?.map(METADATA_FIELDS, misplacedDescription(kind));
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
    // Accepted as Kubernetes does: the API server drops the namespace of a cluster-scoped object.
    nsVal.warn(
      "a CiliumClusterwideNetworkPolicy is cluster-wide: metadata.namespace is ignored (the Kubernetes API server drops it); remove it",
    );
  } else if (nsVal) {
    namespace = nsVal.str();
    const bad = namespace === undefined ? undefined : checkLabelName(namespace);
    if (bad) nsVal.error(bad);
  }
  for (const [, v] of m.get("labels")?.entries() ?? []) if (v.kind !== "null") v.str();
  const audit = booleanAnnotation(m, AUDIT_ANNOTATION);
  if (name === undefined || m.self.ctx.problems.length > before) return undefined;
  return { name, namespace, audit };
}

/**
 * A "true"/"false" annotation of `metadata` (absent: false); any other value is an error at the
 * annotation. Every annotation value is checked to be a string (Kubernetes' type for them).
 */
export function booleanAnnotation(metadata: Fields, key: string): boolean {
  let on = false;
  for (const [k, v] of metadata.get("annotations")?.entries() ?? []) {
    const text = v.kind === "null" ? "" : v.str();
    if (k !== key || text === undefined) continue;
    if (text === "true") on = true;
    else if (text !== "false") v.error(`annotation ${key} must be "true" or "false"`);
  }
  return on;
}
