/**
 * `membrane agent`: opens the store, starts the Agent and serves its API
 * until SIGINT/SIGTERM. Stopping leaves the kernel enforcing.
 *
 *   AgentOptions --runAgent--> Store (embedded | etcd) + Agent + ApiServer
 */
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { settleHeap } from "./heap-settle.js";
import { kubeApi, startK8sWatcher, type K8sOptions } from "../k8s/start.js";
import type { K8sWatcher } from "../k8s/watcher.js";
import { withK8sStatus } from "../k8s/status.js";
import { EmbeddedStore } from "../store/embedded.js";
import { EtcdStore } from "../store/etcd.js";
import type { Store } from "../store/store.js";
import type { EngineConfig } from "../policy/query.js";
import { Agent, type AgentParams } from "./agent.js";
import { ApiServer } from "./api/server.js";
import type { HubbleServer } from "../observe/hubble/server.js";
import { startHubble, withHubble, type HubbleOptions } from "./hubble.js";
import { agentRoutes } from "./routes.js";
import { withClusterRoutes } from "../cluster/routes.js";
import { ClusterSession, type ClusterOptions } from "../cluster/session.js";
import { ClusterIdentities } from "../cluster/identities.js";
import { startClusterIpcache, type ClusterIpcache } from "../cluster/start-ipcache.js";
import { nodeOfIp } from "../cluster/node-of-ip.js";
import { VXLAN_PORT } from "../datapath/peer-routes.js";
import type { EncryptionOptions } from "../encryption/options.js";
import { startEncryption } from "../encryption/start.js";
import type { EncryptionAgent } from "../encryption/mode.js";
import { withEncryptionRoutes } from "../encryption/routes.js";
import { AuthCluster, authRecordOf, DEFAULT_AUTH_PORT } from "../auth/cluster.js";
import { DEFAULT_LB_CONFIG } from "../lb/types.js";

export interface AgentOptions {
  readonly stateDir: string;
  readonly socketPath: string;
  readonly nodeNetns?: string;
  readonly netnsPrefix: string;
  readonly podCidr4: string;
  readonly podCidr6?: string;
  readonly table: string;
  readonly logGroup: number;
  readonly etcd?: readonly string[];
  readonly engine: Partial<EngineConfig>;
  readonly logLevel: string;
  readonly resyncMs: number;
  /** Flow visibility (NFLOG reader, flow ring, metrics, export); absent = off. */
  readonly observe?: AgentParams["observe"];
  /** The L7 proxy; absent = off (L7 rules are then enforced as drops). */
  readonly proxy?: AgentParams["proxy"];
  /** Watch a Kubernetes API (`--kubeconfig`) and feed its objects to the controllers; absent = off. */
  readonly k8s?: K8sOptions;
  /** Runtime events (process exec/exit); absent = off. */
  readonly runtime?: AgentParams["runtime"];
  /** Cluster mode (`--cluster-store`): shared state in etcd; the pod CIDRs come from the cluster. */
  readonly cluster?: ClusterOptions;
  /** Hubble's Observer API (gRPC) over the flow ring; served when flows are on and this is given. */
  readonly hubble?: HubbleOptions;
  /** The SPIFFE identity provider and Workload API (`--spiffe`); absent = off. */
  readonly spiffe?: AgentParams["spiffe"];
  /** Gateway API and Ingress (`--gateway`); absent = off. */
  readonly gateway?: AgentParams["gateway"];
  /** Transparent encryption between nodes (`--encryption wireguard|ipsec`, cluster mode); absent = off. */
  readonly encryption?: EncryptionOptions;
  /** Services' address pools (`--service-cidr`, `--lb-pool`, `--node-port-range`); lb/types.ts defaults. */
  readonly lb?: AgentParams["lb"];
}

export interface RunningAgent {
  readonly agent: Agent;
  /** The Kubernetes watcher, when `k8s` was given. */
  readonly k8s: K8sWatcher | undefined;
  /** The cluster session, in cluster mode. */
  readonly cluster: ClusterSession | undefined;
  /** Hubble's Observer API, when served. */
  readonly hubble: HubbleServer | undefined;
  stop(): Promise<void>;
}

export async function startAgent(o: AgentOptions, logger?: Logger): Promise<RunningAgent> {
  const log = logger ?? pino({ level: o.logLevel, base: { component: "agent" } }, pino.destination(2));
  const kube = o.k8s ? kubeApi(o.k8s) : undefined; // a bad kubeconfig stops the start here
  await mkdir(o.stateDir, { recursive: true, mode: 0o700 });
  const store: Store = o.etcd?.length
    ? new EtcdStore({ endpoints: o.etcd, logger: log })
    : await EmbeddedStore.open({ dir: join(o.stateDir, "store"), logger: log });
  // Cluster mode: connect, take the lease and claim the pod CIDRs before the agent uses them.
  const cluster = o.cluster
    ? await ClusterSession.open(o.cluster, log).catch(async (e: unknown) => {
        await store.close().catch(() => undefined);
        throw e;
      })
    : undefined;
  const podCidr4 = cluster?.podCidrs.ipv4 ?? o.podCidr4;
  const podCidr6 = cluster ? cluster.podCidrs.ipv6 : o.podCidr6;
  let ipcache: ClusterIpcache | undefined; // cluster mode, set once the agent started (below)
  // Cluster mode: flows name the node of a peer on another node (the owner of its pod CIDR).
  const enc: { wg?: EncryptionAgent } = {}; // --encryption: started below, before the agent
  const observe =
    o.observe && cluster
      ? {
          ...o.observe,
          nodeOfIp: nodeOfIp(() => ipcache?.view.snapshot),
          ...(o.encryption
            ? {
                encryptedPeer: (ip: string, tcp: boolean, id: number) =>
                  enc.wg?.encrypts(ip, tcp, id) === true,
                tunnelOrigin: (dst: string, dport: number, sport: number) =>
                  enc.wg?.originOf?.(dst, dport, sport),
              }
            : {}),
        }
      : o.observe;
  const agent = new Agent({
    store,
    logger: log,
    ...(o.nodeNetns !== undefined ? { nodeNetns: o.nodeNetns } : {}),
    netnsPrefix: o.netnsPrefix,
    podCidr4,
    ...(podCidr6 !== undefined ? { podCidr6 } : {}),
    table: o.table,
    logGroup: o.logGroup,
    // Cluster mode: host policies select this node by its --node-labels.
    engine: cluster && o.cluster ? { ...o.engine, nodeLabels: o.cluster.labels } : o.engine,
    ...(o.cluster?.tunnel === "vxlan" ? { tunnelPort: VXLAN_PORT } : {}),
    ...(o.encryption?.tunnel ? { mtlsTunnelGid: o.encryption.tunnel.gid } : {}),
    resyncMs: o.resyncMs,
    stateDir: o.stateDir,
    ...(observe ? { observe } : {}),
    ...(o.proxy ? { proxy: o.proxy } : {}),
    ...(o.runtime ? { runtime: o.runtime } : {}),
    ...(o.spiffe ? { spiffe: o.spiffe } : {}),
    ...(o.gateway ? { gateway: o.gateway } : {}),
    ...(o.lb ? { lb: o.lb } : {}),
    // Cluster mode: shared policies/namespaces/services, and identity numbers claimed in etcd.
    ...(cluster
      ? { cluster: cluster.ctx, clusterIdentities: new ClusterIdentities({ ctx: cluster.ctx }) }
      : {}),
  });
  // Encryption: the strict drop and the tunnel before the agent's first rule (encryption/start.ts).
  // The mTLS tunnel asks which identity a local pod address has (the engine exists once the agent started).
  const identityOf = (ip: string): number | undefined => {
    try {
      return agent.engine.ipcache.lookup(ip).identity;
    } catch {
      return undefined;
    }
  };
  // ... and whether a peer node hosts an identity it presents (its pods, from the cluster's ipcache).
  const nodeOf = nodeOfIp(() => ipcache?.view.snapshot);
  const hosts = (node: string, identity: number): boolean =>
    agent.remoteEndpoints.list().some((r) => r.identity === identity && nodeOf(r.ip) === node);
  const wg = await startEncryption(o, cluster, [podCidr4, podCidr6], log, { identityOf, hosts }).catch(
    async (e: unknown) => {
      await cluster?.close().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw e;
    },
  );
  if (wg) enc.wg = wg;
  try {
    await agent.start();
    const authRecord = agent.spiffe?.auth ? authRecordOf(agent.spiffe.provider, o.spiffe?.authPort ?? DEFAULT_AUTH_PORT) : undefined; // prettier-ignore
    // The node's service ranges in its record: what `membrane apply --cluster-store` allocates Services from.
    const lb = { ...DEFAULT_LB_CONFIG, ...o.lb };
    await cluster?.start({ ...(wg ? { encryption: wg.record() } : {}), ...(authRecord ? { auth: authRecord } : {}), lb }); // prettier-ignore
    // Cluster mode: publish this node's endpoints, learn the others' and route to their pod CIDRs.
    ipcache =
      cluster && o.cluster
        ? await startClusterIpcache(cluster.ctx, {
            agent,
            endpointsRevision: () =>
              agent.status().controllers.find((c) => c.name === "endpoints")?.desired ?? 0,
            localStore: store,
            routing: { ...(o.nodeNetns !== undefined ? { netns: o.nodeNetns } : {}), mode: o.cluster.tunnel },
            // The mTLS tunnel redirects in nftables; WireGuard and IPsec route peers' pods to a device.
            ...(wg && wg.mode !== "mtls-tunnel" ? { encryptDevice: wg.ifname, encryptMode: wg.mode } : {}),
          })
        : undefined;
    // Key rotations publish the node's record again (encryption/rotation.ts).
    const reg = cluster?.registry;
    if (wg && ipcache)
      await wg.attach(ipcache.view, async (e) => reg?.publish({ ...reg.self(), encryption: e }));
    // Mutual authentication across nodes: the handshake port, the peers' roots (auth/cluster.ts).
    const auth = agent.spiffe?.auth;
    if (auth && ipcache && cluster?.registry && o.cluster) {
      const areg = cluster.registry;
      await AuthCluster.attach({
        manager: auth,
        view: ipcache.view,
        self: o.cluster.node,
        port: o.spiffe?.authPort ?? DEFAULT_AUTH_PORT,
        ...(o.nodeNetns !== undefined ? { netns: o.nodeNetns } : {}),
        logger: log,
        publish: (a) => areg.publish({ ...areg.self(), auth: a }),
      });
    }
  } catch (e) {
    await wg?.stop().catch(() => undefined);
    await ipcache?.stop().catch(() => undefined);
    if (cluster) await agent.stop().catch(() => undefined);
    await cluster?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
  settleHeap(); // the start's state promoted now, not in the first requests (heap-settle.ts)
  let k8s: K8sWatcher | undefined = undefined; // set once the API serves (below)
  const routes = withEncryptionRoutes(
    withClusterRoutes(
      withK8sStatus(agentRoutes(agent), () => k8s?.status()),
      cluster,
    ),
    wg,
  );
  const api = new ApiServer({ socketPath: o.socketPath, routes, logger: log });
  let hubble: HubbleServer | undefined;
  try {
    await api.start();
    if (o.hubble && o.observe)
      hubble = await startHubble(agent, o.observe.nodeName, o.socketPath, o.hubble, log);
    // Cluster mode: the node record says where the Observer API is (what `membrane relay` connects to).
    if (hubble && cluster?.registry)
      await cluster.registry.publish(withHubble(cluster.registry.self(), hubble));
    agent.serving();
  } catch (e) {
    await api.stop().catch(() => undefined);
    await wg?.stop().catch(() => undefined);
    await ipcache?.stop().catch(() => undefined);
    await agent.stop();
    await cluster?.close().catch(() => undefined);
    await store.close().catch(() => undefined);
    throw e;
  }
  // After the API serves: the CNI plugin can make the endpoints the pods' labels are for.
  k8s = kube && o.k8s ? startK8sWatcher(kube, o.k8s, agent, [podCidr4, podCidr6], log, store) : undefined;
  return {
    agent,
    k8s,
    cluster,
    hubble,
    async stop() {
      await k8s?.stop();
      await hubble?.stop();
      await api.stop();
      await wg?.stop();
      await ipcache?.stop();
      await agent.stop();
      await cluster?.close();
      await store.close();
      log.info("agent stopped; the kernel keeps enforcing");
    },
  };
}

/** Runs until a signal; resolves when stopped. */
export async function runAgent(o: AgentOptions): Promise<void> {
  const running = await startAgent(o);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      void running.stop().finally(resolve);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
