/** What an Agent is built from (agent.ts): its store, logger, node and kernel settings, proxy, flows. */
import type { Logger } from "pino";
import type { ClusterIdentities } from "../cluster/identities.js";
import type { EngineConfig } from "../policy/query.js";
import type { Store } from "../store/store.js";
import type { ObserverParams } from "./observer.js";
import type { FlowLookup } from "../observe/flow-lookups.js";
import type { RuntimeParams } from "./controllers/runtime.js";
import type { ClusterContext } from "../cluster/context.js";
import type { SpiffeParams } from "./controllers/spiffe.js";
import type { LbConfig } from "../lb/types.js";

export interface AgentParams {
  readonly store: Store;
  readonly logger: Logger;
  /** The node's network namespace; undefined = the namespace the agent runs in. */
  readonly nodeNetns?: string;
  /** Prefix of the endpoint namespaces this agent creates (unique per node). */
  readonly netnsPrefix: string;
  readonly podCidr4: string;
  readonly podCidr6?: string;
  readonly table: string;
  readonly logGroup: number;
  readonly engine: Partial<EngineConfig>;
  /** Periodic resync of the kernel with desired state (ms; 0 = off). */
  readonly resyncMs: number;
  /** The state directory, reported in status so that `endpoint exec` can hide it from workloads. */
  readonly stateDir?: string;
  /**
   * The node's L7 proxy (HTTP, gRPC, Kafka, TLS, DNS with toFQDNs); absent =
   * none: L7 rules are then compiled as drops (fail closed).
   */
  readonly proxy?: {
    readonly gid: number;
    /** User the proxy process drops root for once its sockets are bound; absent = stays root. */
    readonly uid?: number;
    readonly l7Port: number;
    readonly dnsPort: number;
    /** Proxy processes, one per core (proxy/runtime/workers.ts), on ports l7Port.. and dnsPort..; default 1. */
    readonly workers?: number;
    readonly secretsDir?: string;
    /** Shortest life of a DNS-learned address, in seconds (Cilium's --tofqdns-min-ttl). Default 3600. */
    readonly dnsMinTtlSeconds?: number;
    /** How often expired DNS-learned addresses are looked for (ms). Default 5000. */
    readonly dnsGcIntervalMs?: number;
  };
  /** Flow visibility; absent = no NFLOG reader, no flows. */
  readonly observe?: {
    readonly nodeName: string;
    readonly ringCapacity: number;
    /** Cluster mode: names the node of a peer on another node in flows (cluster/node-of-ip.ts). */
    readonly nodeOfIp?: (ip: string) => string | undefined;
    /** --encryption wireguard: whether traffic with this address goes through the tunnel (IP.encrypted). */
    readonly encryptedPeer?: (ip: string, tcp: boolean, identity: number) => boolean;
    /** --encryption mtls-tunnel: the source pod of a connection the tunnel delivered (FlowLookup.tunnelOrigin). */
    readonly tunnelOrigin?: FlowLookup["tunnelOrigin"];
    readonly metricsAddress?: string;
    /** Hubble metric handlers (`--hubble-metrics`); absent = every handler without options. */
    readonly hubbleMetrics?: ObserverParams["hubbleMetrics"];
    readonly export?: ObserverParams["export"];
  };
  /**
   * Cluster mode: endpoint label sets take their numbers from the cluster (src/cluster/identities.ts,
   * started by the agent); absent = numbers allocated on this node.
   */
  readonly clusterIdentities?: ClusterIdentities;
  /** Runtime events (process exec/exit per endpoint, Tetragon's JSON); absent = off. */
  readonly runtime?: RuntimeParams;
  /** Cluster mode (`--cluster-store`): policies, namespaces and services are shared through etcd. */
  readonly cluster?: ClusterContext;
  /** The built-in SPIFFE identity provider and the Workload API (`--spiffe`); absent = off. */
  readonly spiffe?: SpiffeParams;
  /** Cluster mode with `--tunnel vxlan`: the overlay's UDP port, never judged by the host firewall. */
  readonly tunnelPort?: number;
  /** `--encryption mtls-tunnel`: the tunnel's group, whose marked connections carry a source identity (compile-tunnel.ts). */
  readonly mtlsTunnelGid?: number;
  /** Gateway API and Ingress (`--gateway`, agent/gateway-start.ts); absent = off. */
  readonly gateway?: {
    readonly secretsDir?: string;
    /** Cluster mode: the TTL of the Gateways' address reservations (gateway-addresses.ts LEASE_TTL_S; tests: seconds). */
    readonly addressLeaseTtlSeconds?: number;
  };
  /** Services in the kernel: service CIDR, LoadBalancer pool, NodePort range (lb/types.ts defaults). */
  readonly lb?: Partial<LbConfig>;
}
