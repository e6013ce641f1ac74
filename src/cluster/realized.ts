/**
 * What each live node has realized, and `membrane apply --wait`:
 *
 *   cluster/nodes/<node>  (live: on the node's lease)  ┐
 *   cluster/status/<node> {realizedRevision, lastError} ┴─▶ NodeRealized[] ─▶ laggards(target)
 *
 * A node is live while its registry record exists; a status without a node
 * record (a node that left) is not waited for. A live node without a status
 * yet has realized nothing (revision 0).
 */
import { MembraneError } from "../errors.js";
import type { Store } from "../store/store.js";
import { CLUSTER_KEYS, type NodeStatusV1 } from "./keys.js";

export interface NodeRealized {
  readonly node: string;
  readonly realizedRevision: number;
  readonly at?: string;
  readonly lastError?: string;
}

/** Reads every live node's realized revision from the cluster store. */
export async function readRealized(kv: Store): Promise<NodeRealized[]> {
  const [nodes, statuses] = await Promise.all([kv.list(CLUSTER_KEYS.nodes), kv.list(CLUSTER_KEYS.status)]);
  const byNode = new Map<string, NodeStatusV1>();
  for (const s of statuses.kvs) {
    try {
      const st = JSON.parse(s.value) as Partial<NodeStatusV1>;
      if (st.v === 1 && Number.isSafeInteger(st.realizedRevision))
        byNode.set(s.key.slice(CLUSTER_KEYS.status.length), st as NodeStatusV1);
    } catch {
      // A status that does not parse is "nothing realized" (never trusted).
    }
  }
  return nodes.kvs.map((n) => {
    const node = n.key.slice(CLUSTER_KEYS.nodes.length);
    const st = byNode.get(node);
    return {
      node,
      realizedRevision: st?.realizedRevision ?? 0,
      ...(st?.at !== undefined ? { at: st.at } : {}),
      ...(st?.lastError !== undefined ? { lastError: st.lastError } : {}),
    };
  });
}

/** The nodes that have not realized `target` yet. */
export function laggards(nodes: readonly NodeRealized[], target: number): NodeRealized[] {
  return nodes.filter((n) => n.realizedRevision < target);
}

/** "b (realized 41, last error: ...), c (realized nothing yet)". */
export function laggardText(ls: readonly NodeRealized[]): string {
  return ls
    .map(
      (n) =>
        `${n.node} (${n.realizedRevision > 0 ? `realized ${n.realizedRevision}` : "realized nothing yet"}${
          n.lastError ? `, last error: ${n.lastError}` : ""
        })`,
    )
    .join(", ");
}

/**
 * Polls `read` until every live node realized `target`; throws CLUSTER_NOT_REALIZED naming the
 * laggards when `timeoutMs` passes first. Resolves with the nodes as last read.
 */
export async function waitRealized(
  read: () => Promise<readonly NodeRealized[]>,
  target: number,
  timeoutMs: number,
  pollMs = 100,
): Promise<readonly NodeRealized[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const nodes = await read();
    const late = laggards(nodes, target);
    if (late.length === 0) return nodes;
    if (Date.now() >= deadline) {
      throw new MembraneError(
        "CLUSTER_NOT_REALIZED",
        `Cannot confirm revision ${target} on every node within ${Math.round(timeoutMs / 1000)} s: not realized by ${laggardText(late)}`,
        {
          hint: "The change is stored and each node enforces it when it can; `membrane status` shows each node's realized revision.",
        },
      );
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
