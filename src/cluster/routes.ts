/**
 * Cluster mode in the agent's API:
 *
 *   GET /v1/nodes    every node known to the cluster: registered (alive, key present) or only
 *                    holding a pod CIDR claim (alive: false) — `membrane get nodes`
 *   GET /v1/status   + `cluster: {mode, node, store, lease, podCidrs, tunnel, nodesAlive}`
 *
 * Without cluster mode GET /v1/nodes answers a clear error.
 */
import type { Route } from "../agent/api/router.js";
import { MembraneError } from "../errors.js";
import { CLUSTER_KEYS, type PodCidrClaimV1 } from "./keys.js";
import type { ClusterSession } from "./session.js";

export interface NodeView {
  readonly name: string;
  readonly addresses: { readonly ipv4?: string; readonly ipv6?: string };
  readonly podCidrs: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
  readonly alive: boolean;
  readonly routing?: "native" | "vxlan";
  readonly self: boolean;
  readonly startedAt?: string;
}

export async function nodeViews(session: ClusterSession): Promise<NodeView[]> {
  const out = new Map<string, NodeView>();
  for (const [name, r] of session.registry?.nodes() ?? new Map()) {
    out.set(name, {
      name,
      addresses: r.addresses,
      podCidrs: r.podCidrs,
      labels: r.labels,
      alive: true,
      routing: r.routing,
      self: name === session.ctx.node,
      startedAt: r.startedAt,
    });
  }
  // Nodes that claimed pod CIDRs but have no live record (stopped, or their lease expired).
  const { kvs } = await session.kv.list(CLUSTER_KEYS.podCidrs);
  for (const kv of kvs) {
    const name = kv.key.slice(CLUSTER_KEYS.podCidrs.length);
    if (out.has(name)) continue;
    let c: Partial<PodCidrClaimV1> = {};
    try {
      c = JSON.parse(kv.value) as PodCidrClaimV1;
    } catch {
      continue;
    }
    out.set(name, {
      name,
      addresses: {},
      podCidrs: [c.ipv4, c.ipv6].filter((x): x is string => typeof x === "string"),
      labels: {},
      alive: false,
      self: name === session.ctx.node,
    });
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** The agent's routes with the cluster's added (session undefined: not in cluster mode). */
export function withClusterRoutes(routes: Route[], session: ClusterSession | undefined): Route[] {
  const withStatus = routes.map((r): Route => {
    if (!session || r.kind === "stream" || r.method !== "GET" || r.path !== "/v1/status") return r;
    const base = r.handler;
    return {
      ...r,
      handler: async (req) => {
        const status = (await base(req)) as Record<string, unknown>;
        // The agent's own `cluster` (what each node realized, api/cluster-routes.ts) and the session's.
        const realized = typeof status["cluster"] === "object" ? status["cluster"] : {};
        return { ...status, cluster: { ...realized, ...session.status() } };
      },
    };
  });
  return [
    ...withStatus,
    {
      method: "GET",
      path: "/v1/nodes",
      handler: async () => {
        if (!session) {
          throw new MembraneError("CLUSTER_INVALID", "Cannot list nodes: this agent is not in cluster mode", {
            hint: "start the agent with --cluster-store etcd://HOST:PORT --node-name N --node-ip IP",
          });
        }
        return nodeViews(session);
      },
    },
  ];
}
