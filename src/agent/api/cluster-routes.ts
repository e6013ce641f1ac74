/**
 * Cluster mode in the API (cluster/resources.ts, cluster/realized.ts):
 *
 *   GET /v1/cluster/realized   {node, realizedRevision, nodes: [{node, realizedRevision, at, lastError}]}
 *   GET /v1/status             + cluster: the same (what `membrane get status` shows per node)
 *
 * `membrane apply --wait` polls the first until every live node realized the apply's revision.
 */
import { MembraneError } from "../../errors.js";
import { readRealized, type NodeRealized } from "../../cluster/realized.js";
import type { ClusterResources } from "../../cluster/resources.js";
import type { Route } from "./router.js";

export interface ClusterRealizedView {
  readonly node: string;
  readonly realizedRevision: number;
  readonly lastError?: string;
  /** Every live node (cluster/nodes/) with what it realized (cluster/status/). */
  readonly nodes: readonly NodeRealized[];
}

export async function clusterRealized(c: ClusterResources): Promise<ClusterRealizedView> {
  const err = c.lastError;
  return {
    node: c.context.node,
    realizedRevision: c.realized,
    ...(err !== undefined ? { lastError: err } : {}),
    nodes: await readRealized(c.context.kv),
  };
}

export function clusterRoutes(cluster: () => ClusterResources | undefined): Route[] {
  return [
    {
      method: "GET",
      path: "/v1/cluster/realized",
      handler: () => {
        const c = cluster();
        if (!c) {
          throw new MembraneError(
            "CLUSTER_INVALID",
            "Cannot tell what the cluster's nodes realized: this agent is not in cluster mode",
            { hint: "start the agent with --cluster-store etcd://HOST:PORT --node-name N --node-ip IP" },
          );
        }
        return clusterRealized(c);
      },
    },
  ];
}

/** `GET /v1/status`: the agent's status, with `cluster` added in cluster mode. */
export function withClusterStatus<S extends object>(
  status: S,
  c: ClusterResources | undefined,
): S | Promise<S & { cluster: ClusterRealizedView | { error: string } }> {
  if (!c) return status;
  return clusterRealized(c).then(
    (cluster) => ({ ...status, cluster }),
    // The status answers even when etcd does not: the node's own view, and why the rest is missing.
    (e: unknown) => ({ ...status, cluster: { error: e instanceof Error ? e.message : String(e) } }),
  );
}
