/**
 * Wiring of the cluster ipcache and routing for one agent (cluster mode):
 *
 *   startClusterIpcache(ctx, {agent, localStore, routing?})
 *     NodeView (nodes/, podcidrs/) --> ClusterRouting (routes to peers' pod CIDRs)
 *                                  --> IpcacheReceiver (peers' endpoints -> remote endpoints, node addresses)
 *     local endpoints --IpcachePublisher--> cluster/ipcache/<node>/<ip> on the lease
 *
 * Local endpoint changes are noticed through the endpoints controller's desired
 * revision (`endpointsRevision`, polled every `pollMs`: every path that changes
 * endpoints, API, CNI or Kubernetes, bumps it), plus a full pass every `resyncMs`.
 */
import type { Store } from "../store/store.js";
import type { PeerRoutingConfig } from "../datapath/peer-routes.js";
import type { ClusterContext } from "./context.js";
import { IpcachePublisher, type LocalEndpoint } from "./ipcache-publish.js";
import { IpcacheReceiver, type IpcacheSink } from "./ipcache-sync.js";
import { NodeView } from "./node-view.js";
import { ClusterRouting } from "./routing.js";

export interface ClusterIpcacheDeps {
  /** The agent: its endpoints, remote endpoints and node addresses (Agent satisfies it). */
  readonly agent: IpcacheSink & { listEndpoints(): readonly LocalEndpoint[] };
  /** The desired revision of the agent's endpoints (a change -> publish). */
  readonly endpointsRevision: () => number;
  /** The agent's node-local store (records which node addresses this sync set). */
  readonly localStore?: Store;
  /** Route to peers (native or vxlan) in the node's namespace; absent = routes are someone else's job. */
  readonly routing?: Omit<PeerRoutingConfig, "localIp">;
  /** --encryption wireguard|ipsec: route peers that publish a key of that mode through this interface. */
  readonly encryptDevice?: string;
  readonly encryptMode?: "wireguard" | "ipsec";
  /** The registry view, when another part already has one. */
  readonly view?: NodeView;
  readonly pollMs?: number;
  readonly resyncMs?: number;
}

export interface ClusterIpcache {
  readonly view: NodeView;
  readonly publisher: IpcachePublisher;
  readonly receiver: IpcacheReceiver;
  readonly routing: ClusterRouting | undefined;
  /** Publishes now (call after a local endpoint change to skip the poll). */
  endpointsChanged(): Promise<void>;
  stop(): Promise<void>;
}

export async function startClusterIpcache(
  ctx: ClusterContext,
  d: ClusterIpcacheDeps,
): Promise<ClusterIpcache> {
  const logger = ctx.logger.child({ part: "cluster-ipcache" });
  const ownView = d.view === undefined;
  const view = d.view ?? new NodeView(ctx.kv, logger);
  const localIp = ctx.nodeIp.ipv4 ?? ctx.nodeIp.ipv6;
  const routing =
    d.routing && localIp !== undefined
      ? new ClusterRouting({
          node: ctx.node,
          view,
          routing: { ...d.routing, localIp },
          logger,
          ...(d.encryptDevice !== undefined ? { encryptDevice: d.encryptDevice } : {}),
          ...(d.encryptMode !== undefined ? { encryptMode: d.encryptMode } : {}),
        })
      : undefined;
  const receiver = new IpcacheReceiver(ctx, view, d.agent, logger, d.localStore);
  const publisher = new IpcachePublisher(ctx, () => d.agent.listEndpoints(), logger);
  const timers: NodeJS.Timeout[] = [];
  try {
    if (ownView) await view.start();
    await routing?.trigger();
    await receiver.start();
    await publisher.changed();
  } catch (e) {
    await Promise.allSettled([receiver.stop(), routing?.stop(), ownView ? view.stop() : undefined]);
    throw e;
  }
  // The node's lease was lost and re-granted: etcd deleted our entries; put them on the new one.
  const unsubscribe = ctx.onLeaseRenewed?.((lease) => publisher.republish(lease));
  let seen = d.endpointsRevision();
  timers.push(
    setInterval(() => {
      const now = d.endpointsRevision();
      if (now === seen) return;
      seen = now;
      void publisher.changed();
    }, d.pollMs ?? 100),
    setInterval(() => {
      void publisher.changed();
      void routing?.trigger(); // repairs drift in the kernel (a diff: nothing runs when nothing differs)
    }, d.resyncMs ?? 30_000),
  );
  for (const t of timers) t.unref();
  return {
    view,
    publisher,
    receiver,
    routing,
    endpointsChanged: () => publisher.changed(),
    stop: async () => {
      for (const t of timers) clearInterval(t);
      unsubscribe?.();
      await publisher.stop();
      await receiver.stop();
      await routing?.stop();
      if (ownView) await view.stop();
    },
  };
}
