/**
 * A node's labels (`--node-labels`, NodeRecordV1.labels): what host policies'
 * `nodeSelector` selects on (Cilium's host firewall), source k8s as
 * Kubernetes node labels are.
 *
 *   {"role": "edge", "kubernetes.io/hostname": "n1"} --nodeLabelSet--> k8s:role=edge k8s:kubernetes.io/hostname=n1
 */
import { MembraneError } from "../errors.js";
import { LabelSet, type Label } from "./label.js";
import { checkKey, checkValue } from "./selector.js";

/** The node's labels as a LabelSet; throws LABEL_INVALID naming a malformed key or value. */
export function nodeLabelSet(labels: Readonly<Record<string, string>>): LabelSet {
  const out: Label[] = [];
  for (const [key, value] of Object.entries(labels)) {
    if (key.includes(":")) {
      throw new MembraneError(
        "LABEL_INVALID",
        `Cannot use node label "${key}": node labels have no source prefix (sources such as reserved: are Membrane's)`,
      );
    }
    checkKey(key, key);
    checkValue(value, key);
    out.push({ source: "k8s", key, value });
  }
  return LabelSet.from(out);
}
