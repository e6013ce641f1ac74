/**
 * Services and EndpointSlices as the load balancer computes on them: the user's
 * `v1` Service and `discovery.k8s.io/v1` EndpointSlice, parsed once (parse.ts) into
 * these plain records, with their allocated addresses and ports (allocate.ts).
 */

export type Protocol = "TCP" | "UDP" | "SCTP";
export type IpFamily = "IPv4" | "IPv6";

export interface ServicePortSpec {
  /** Required when the service has more than one port. */
  readonly name?: string;
  readonly protocol: Protocol;
  readonly port: number;
  /** A backend port number, or the name of a pod's container port. */
  readonly targetPort: number | string;
  /** NodePort and LoadBalancer services; allocated when absent. */
  readonly nodePort?: number;
  /** The application protocol (`kubernetes.io/h2c`, `grpc`, ...): the gateway speaks HTTP/2 to h2c and grpc. */
  readonly appProtocol?: string;
}

export interface LbService {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly type: "ClusterIP" | "NodePort" | "LoadBalancer";
  /** Absent: backends come from EndpointSlices labelled kubernetes.io/service-name. */
  readonly selector?: Readonly<Record<string, string>>;
  /** Allocated when absent; "None": headless (no address, nothing balanced). The primary family's. */
  readonly clusterIP?: string;
  /** Dual-stack: both ClusterIPs, the primary (clusterIP) first; absent: clusterIP alone. */
  readonly clusterIPs?: readonly string[];
  /**
   * spec.ipFamilies as asked (parse) and as allocated (allocate.ts: the families the service has,
   * primary first). Absent: IPv4 only (every record written before IPv6 services).
   */
  readonly ipFamilies?: readonly IpFamily[];
  /** spec.ipFamilyPolicy; absent: SingleStack. */
  readonly ipFamilyPolicy?: "PreferDualStack" | "RequireDualStack";
  readonly ports: readonly ServicePortSpec[];
  /** sessionAffinity ClientIP: seconds (sessionAffinityConfig.clientIP.timeoutSeconds, default 10800). */
  readonly affinitySeconds?: number;
  /** LoadBalancer: the address from the configured pool (allocated), of the primary family. */
  readonly loadBalancerIP?: string;
  /** Dual-stack LoadBalancer with a pool of each family: both addresses, loadBalancerIP first. */
  readonly loadBalancerIPs?: readonly string[];
  /**
   * LoadBalancer with externalTrafficPolicy Local: the node port on which each node answers
   * whether it has local ready backends (kube-proxy's health check; allocated from the node port
   * range unless given).
   */
  readonly healthCheckNodePort?: number;
  /** `membrane.io/lb-algorithm: maglev`: consistent hashing instead of random. */
  readonly algorithm: "random" | "maglev";
  /** `service.cilium.io/lb-l7: enabled`: HTTP/2 and gRPC balanced per request by the proxy. */
  readonly lbL7?: boolean;
  /**
   * `externalTrafficPolicy: Local` (NodePort and LoadBalancer): a node sends what arrives on its
   * NodePorts and LoadBalancer addresses to its own backends only, with the client's address kept;
   * a node without one drops (kube-proxy's "has no local endpoints"). Absent: Cluster.
   */
  readonly externalLocal?: boolean;
  /** `internalTrafficPolicy: Local`: the ClusterIP goes to the node's own backends only (none: drop). */
  readonly internalLocal?: boolean;
}

export interface SliceEndpoint {
  readonly addresses: readonly string[];
  /** conditions.ready (absent = ready, as Kubernetes says consumers should read it). */
  readonly ready: boolean;
  /** conditions.serving (absent = ready). */
  readonly serving: boolean;
  /** conditions.terminating (absent = false). */
  readonly terminating: boolean;
}

export interface LbSlice {
  readonly namespace: string;
  readonly name: string;
  /** The kubernetes.io/service-name label: the service the slice belongs to. */
  readonly service: string;
  readonly ports: readonly { readonly name: string; readonly port: number; readonly protocol: Protocol }[];
  readonly endpoints: readonly SliceEndpoint[];
}

/** The node's service address configuration. */
export interface LbConfig {
  /** ClusterIPs are allocated from here (the primary family's CIDR, IPv4 or IPv6). Default 10.96.0.0/16. */
  readonly serviceCidr: string;
  /** Dual-stack clusters: the other family's CIDR (`--service-cidr 10.96.0.0/16,fd00:96::/112`). */
  readonly serviceCidrSecondary?: string;
  /** LoadBalancer addresses are allocated from here (IPv4 or IPv6); absent = they stay pending. */
  readonly loadBalancerPool?: string;
  /** The other family's LoadBalancer pool (`--lb-pool 192.0.2.0/24,2001:db8:5::/112`). */
  readonly loadBalancerPoolSecondary?: string;
  /** NodePorts are allocated from here (inclusive). Default 30000-32767. */
  readonly nodePortRange: readonly [number, number];
}

export const DEFAULT_LB_CONFIG: LbConfig = { serviceCidr: "10.96.0.0/16", nodePortRange: [30000, 32767] };

/** What `membrane get services` shows of one service. */
export interface ServiceView {
  readonly namespace: string;
  readonly name: string;
  readonly type: LbService["type"];
  readonly clusterIP: string;
  /** Dual-stack: both, primary first. */
  readonly clusterIPs?: readonly string[];
  readonly externalIP?: string;
  readonly ports: string[];
  readonly affinity: string;
  /** Shown when Local (absent: Cluster). */
  readonly externalTrafficPolicy?: "Local";
  readonly internalTrafficPolicy?: "Local";
  /** LoadBalancer + externalTrafficPolicy Local: the health check's node port. */
  readonly healthCheckNodePort?: number;
  /** With healthCheckNodePort: this node's ready backends (distinct addresses of the primary family). */
  readonly localEndpoints?: number;
  readonly backends: { readonly address: string; readonly state: BackendState }[];
}

/**
 * active: takes new connections; terminating: serving its existing connections only
 * (unless no backend is ready, then it takes new ones, as kube-proxy does); not-ready: none.
 */
export type BackendState = "active" | "terminating" | "not-ready";
