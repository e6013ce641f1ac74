/**
 * The labels Membrane derives for a workload, as Cilium does for a pod:
 *
 *   user labels {app: web}  +  namespace "prod" (labels {team: a})
 *     -> k8s:app=web
 *        k8s:io.kubernetes.pod.namespace=prod
 *        k8s:io.cilium.k8s.policy.serviceaccount=default
 *        k8s:io.cilium.k8s.policy.cluster=default
 *        k8s:io.cilium.k8s.namespace.labels.team=a
 *        k8s:io.cilium.k8s.namespace.labels.kubernetes.io/metadata.name=prod
 *
 * Workload labels may not imitate derived or reserved ones (attack-cases.md):
 * a user label whose key is one Membrane derives is rejected, never merged.
 */
import { MembraneError } from "../errors.js";
import { type Label, LabelSet } from "./label.js";
import { checkKey, checkValue } from "./selector.js";

export const POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace";
export const SERVICE_ACCOUNT_LABEL = "io.cilium.k8s.policy.serviceaccount";
export const CLUSTER_LABEL = "io.cilium.k8s.policy.cluster";
export const NAMESPACE_LABELS_PREFIX = "io.cilium.k8s.namespace.labels.";
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";
export const DEFAULT_CLUSTER = "default";

/** Keys a user may not set on a workload: Membrane derives them. */
export function isDerivedKey(key: string): boolean {
  return (
    key === POD_NAMESPACE_LABEL ||
    key.startsWith("io.cilium.k8s.policy.") ||
    key.startsWith(NAMESPACE_LABELS_PREFIX) ||
    key.startsWith("io.cilium.") ||
    key.startsWith("io.kubernetes.")
  );
}

export interface WorkloadLabelsInput {
  namespace: string;
  labels: Readonly<Record<string, string>>;
  namespaceLabels?: Readonly<Record<string, string>>;
  serviceAccount?: string;
  cluster?: string;
}

/**
 * All labels of a workload (user + derived), source k8s. Throws
 * LABEL_INVALID when a user label is malformed, carries a source prefix, or
 * imitates a derived key.
 */
export function workloadLabels(input: WorkloadLabelsInput): LabelSet {
  const out: Label[] = [];
  for (const [key, value] of Object.entries(input.labels)) {
    if (key.includes(":")) {
      throw new MembraneError(
        "LABEL_INVALID",
        `Cannot use workload label "${key}": workload labels have no source prefix (sources such as reserved: are Membrane's)`,
      );
    }
    if (isDerivedKey(key)) {
      throw new MembraneError(
        "LABEL_INVALID",
        `Cannot use workload label "${key}": keys under io.kubernetes. and io.cilium. are derived by Membrane and cannot be set`,
      );
    }
    checkKey(key, key);
    checkValue(value, key);
    out.push({ source: "k8s", key, value });
  }
  checkValue(input.namespace, POD_NAMESPACE_LABEL);
  out.push({ source: "k8s", key: POD_NAMESPACE_LABEL, value: input.namespace });
  out.push({ source: "k8s", key: SERVICE_ACCOUNT_LABEL, value: input.serviceAccount ?? "default" });
  out.push({ source: "k8s", key: CLUSTER_LABEL, value: input.cluster ?? DEFAULT_CLUSTER });
  const nsLabels = { ...(input.namespaceLabels ?? {}), [NAMESPACE_NAME_LABEL]: input.namespace };
  for (const [k, v] of Object.entries(nsLabels)) {
    out.push({ source: "k8s", key: NAMESPACE_LABELS_PREFIX + k, value: v });
  }
  return LabelSet.from(out);
}

/**
 * Identity-relevant labels (Cilium's default label filter): drops keys that
 * change per pod and would explode the number of identities. Reserved, cidr
 * and fqdn labels are always relevant.
 */
export function identityRelevant(labels: LabelSet): LabelSet {
  return labels.filter((l) => {
    if (l.source !== "k8s") return true;
    const k = l.key;
    if (k === POD_NAMESPACE_LABEL || k.startsWith("io.cilium.k8s.")) return true;
    if (k.startsWith("io.kubernetes.")) return false;
    if (/(^|\.)kubernetes\.io\//.test(k) && !k.startsWith("app.kubernetes.io/")) return false;
    if (k.startsWith("k8s.io/") || k.includes(".k8s.io/")) return false;
    if (["pod-template-generation", "pod-template-hash", "controller-revision-hash", "etcd_node"].includes(k))
      return false;
    if (k.startsWith("annotation.")) return false;
    return true;
  });
}
export { nodeLabelSet } from "./node.js"; // a node's labels (Kubernetes node labels)
