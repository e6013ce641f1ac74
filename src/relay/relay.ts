/**
 * `membrane relay`: Hubble Relay for Membrane. One Observer API for the
 * whole cluster, over every agent's.
 *
 *   etcd cluster/nodes/<n>.hubble ──ClusterNodes──▶ PeerPool ──gRPC──▶ agent n1 hubble.sock | host:port (TLS)
 *                                                     │ health (ServerStatus)    agent n2 ...
 *                                                     ▼
 *   client (membrane observe --server relay, hubble) ◀── RelayServer: GetFlows (time-ordered merge within a
 *        unix:/run/membrane/hubble-relay.sock [+ TCP+TLS]     window, node_status events), ServerStatus,
 *                                                             GetNodes, GetNamespaces
 *
 * The relay is read-only towards the cluster: it lists and watches node
 * records, holds no lease and writes nothing. It needs no root: only the
 * agents' sockets (group-readable) or their TLS listeners, and etcd.
 */
import type { Logger } from "pino";
import { EtcdStore, type EtcdStoreParams } from "../store/etcd.js";
import type { HubbleTls } from "../observe/hubble/server.js";
import type { MergeOptions } from "./flows.js";
import { ClusterNodes, StaticNodes } from "./nodes.js";
import type { PeerAddress, PeerTls } from "./peer.js";
import { PeerPool } from "./pool.js";
import { RelayServer, type RelayStats } from "./server.js";

/** Where the relay listens when not told (`membrane observe --server relay`). */
export const DEFAULT_RELAY_SOCKET = "/run/membrane/hubble-relay.sock";

export interface RelayParams {
  /** The cluster store to find the nodes in (etcd), or a fixed list of peers. */
  readonly nodes:
    { readonly store: Omit<EtcdStoreParams, "logger"> } | { readonly peers: readonly PeerAddress[] };
  readonly peerTls?: PeerTls;
  readonly socketPath?: string;
  readonly listen?: { readonly address: string; readonly tls: HubbleTls };
  readonly merge?: Partial<MergeOptions>;
  /** How often each agent is checked (ms, default 1000). */
  readonly healthMs?: number;
  readonly version: string;
  readonly logger: Logger;
}

export interface RunningRelay {
  readonly addresses: readonly string[];
  readonly pool: PeerPool;
  stats(): RelayStats;
  stop(): Promise<void>;
}

export async function startRelay(p: RelayParams): Promise<RunningRelay> {
  const log = p.logger;
  let kv: EtcdStore | undefined;
  let cluster: ClusterNodes | undefined;
  let pool: PeerPool | undefined;
  let server: RelayServer | undefined;
  const stop = async (): Promise<void> => {
    await server?.stop();
    pool?.stop();
    await cluster?.stop();
    await kv?.close().catch(() => undefined);
  };
  try {
    if ("store" in p.nodes) {
      kv = new EtcdStore({ ...p.nodes.store, logger: log });
      cluster = new ClusterNodes({ kv, tls: p.peerTls !== undefined, logger: log });
      await cluster.start();
    }
    const nodes = cluster ?? new StaticNodes("peers" in p.nodes ? p.nodes.peers : []);
    pool = new PeerPool({
      nodes,
      ...(p.peerTls ? { tls: p.peerTls } : {}),
      ...(p.healthMs !== undefined ? { healthMs: p.healthMs } : {}),
      logger: log,
    });
    await pool.start();
    server = new RelayServer({
      pool,
      version: p.version,
      merge: {
        windowMs: p.merge?.windowMs ?? 200,
        maxBuffered: p.merge?.maxBuffered ?? 10_000,
        historyTimeoutMs: p.merge?.historyTimeoutMs ?? 30_000,
      },
      ...(p.socketPath !== undefined ? { socketPath: p.socketPath } : {}),
      ...(p.listen !== undefined ? { listen: p.listen } : {}),
    });
    await server.start();
  } catch (e) {
    await stop();
    throw e;
  }
  const s = server;
  const connected = pool.peers().filter((x) => x.state === "connected").length;
  log.info(
    { addresses: s.addresses, nodes: pool.peers().length, connected },
    "relay serving Hubble's Observer API",
  );
  return { addresses: s.addresses, pool, stats: () => s.stats(), stop };
}
