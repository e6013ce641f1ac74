/**
 * Which node a pod address belongs to, for flows (a remote peer's `node_name`): the node that
 * owns the pod CIDR holding it, as the registry view judged ownership (pod-cidrs.ts: the first
 * claim wins an overlap), so a node cannot make flows name it for another node's pods.
 *
 *   NodeView.snapshot.owned {n2: [10.200.1.0/24], ...} --nodeOfIp("10.200.1.7")--> "n2"
 *
 * Called per flow event: the table is rebuilt only when the snapshot object changes.
 */
import { containsAddr, type Prefix } from "../labels/cidr.js";
import type { NodeSnapshot } from "./node-view.js";

export function nodeOfIp(snapshot: () => NodeSnapshot | undefined): (ip: string) => string | undefined {
  let seen: NodeSnapshot | undefined;
  let table: (readonly [string, Prefix])[] = [];
  return (ip) => {
    const s = snapshot();
    if (s === undefined) return undefined;
    if (s !== seen) {
      seen = s;
      table = [...s.owned].flatMap(([node, ps]) => ps.map((p) => [node, p] as const));
    }
    for (const [node, p] of table) if (containsAddr(p, ip)) return node;
    return undefined;
  };
}
