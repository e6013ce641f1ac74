/**
 * The questions the policy core answers, and its answers.
 *
 *   world state (endpoints, services, DNS answers) + policies
 *   FlowQuery "would A reach B on TCP/80 with GET /x?"  --PolicyEngine.decide-->  Decision
 *
 * Used by `membrane policy test` / `trace` (offline) and by the agent to
 * explain flows. Everything here is plain data.
 */
import type { AuthMode, Direction, Protocol, RuleOrigin } from "./types.js";

export interface EngineConfig {
  /** default: enforce a direction once a rule selects it; always: enforce all; never: allow all. */
  readonly policyEnforcementMode: "default" | "always" | "never";
  /** always: ingress from the local host is allowed whatever the policy; policy: host is subject to policy. */
  readonly allowLocalhost: "always" | "policy";
  /** "" = CIDR rules never select pods or nodes; "nodes" = CIDR rules may select node IPs. */
  readonly policyCIDRMatchMode: "" | "nodes";
  /** Outside addresses get world-ipv4 / world-ipv6 instead of world. */
  readonly dualStack: boolean;
  /** icmps rules honoured. */
  readonly enableICMPRules: boolean;
  /** Mutual authentication enabled on the node; when false, `authentication` fields are refused. */
  readonly meshAuth: boolean;
  /** Cluster name, for the `cluster` entity and the derived cluster label. */
  readonly cluster: string;
  /** Minimum TTL (seconds) for IPs learned from DNS answers. */
  readonly fqdnMinTTL: number;
  /** This node's labels (`--node-labels`): host policies whose nodeSelector selects them apply here. */
  readonly nodeLabels: Readonly<Record<string, string>>;
}

export const DEFAULT_ENGINE_CONFIG: EngineConfig = {
  policyEnforcementMode: "default",
  allowLocalhost: "always",
  policyCIDRMatchMode: "",
  dualStack: false,
  enableICMPRules: true,
  meshAuth: false,
  cluster: "default",
  fqdnMinTTL: 0,
  nodeLabels: {},
};

export interface NamedPort {
  readonly name: string;
  readonly port: number;
  readonly protocol: "TCP" | "UDP" | "SCTP";
}

export interface EndpointSpec {
  readonly name: string;
  readonly namespace: string;
  /** The user's labels (no source prefix); derived labels are added by the engine. */
  readonly labels: Readonly<Record<string, string>>;
  readonly ips: readonly string[];
  readonly namedPorts?: readonly NamedPort[];
  /** `health`: the endpoint has identity reserved:health only. */
  readonly kind?: "pod" | "health";
  readonly serviceAccount?: string;
}

/** An endpoint of another node: only its address and labels matter here. */
export interface RemoteEndpointSpec {
  readonly ip: string;
  readonly namespace: string;
  /** The user's labels (no source prefix), as for EndpointSpec. */
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  /**
   * The pod's named ports: an egress rule naming a port resolves it on the
   * destination, local or remote (Cilium carries them in the kvstore ipcache).
   */
  readonly namedPorts?: readonly NamedPort[];
}

export interface ServiceSpec {
  readonly name: string;
  readonly namespace: string;
  /** Pod selector; absent = a service without selector (its `ips` are outside endpoints). */
  readonly selector?: Readonly<Record<string, string>>;
  readonly labels?: Readonly<Record<string, string>>;
  readonly ports: readonly { port: number; protocol: "TCP" | "UDP" | "SCTP" }[];
  /** Backend addresses of a selector-less service. */
  readonly ips?: readonly string[];
}

/** A side of a connection. */
export type PeerRef =
  | { readonly kind: "endpoint"; readonly name: string; readonly namespace?: string }
  /** The node the endpoints run on (identity host). */
  | { readonly kind: "host" }
  /** An address; what it is (world, CIDR, FQDN, another node) comes from the ipcache. */
  | { readonly kind: "ip"; readonly ip: string };

export interface HttpRequest {
  readonly method: string;
  readonly path: string;
  readonly host?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface KafkaRequest {
  /** Name (`produce`, `fetch`, ...) or number. */
  readonly apiKey: string | number;
  readonly apiVersion?: number;
  readonly clientID?: string;
  readonly topic?: string;
}

export interface FlowQuery {
  readonly from: PeerRef;
  readonly to: PeerRef;
  readonly proto: Protocol | "ICMP" | "ICMPv6";
  /** Destination port (TCP/UDP/SCTP). */
  readonly port?: number;
  readonly icmpType?: number;
  readonly http?: HttpRequest;
  /** A DNS request for this name, sent to `to` (port 53). */
  readonly dnsQuery?: string;
  readonly kafka?: KafkaRequest;
  readonly tls?: { readonly sni: string };
  /** Whether a valid mutual-authentication entry exists for the pair (default false). */
  readonly auth?: boolean;
}

export type DenyHow = "drop" | "http-403" | "dns-refused" | "kafka-denied" | "tls-reset" | "auth-required";

/** Why a direction denied, in Hubble's words where it has them. */
export type DenyReason =
  | "policy-denied" // a deny rule matched (Cilium drop 181, "Policy denied by denylist")
  | "default-deny" // enforced and no allow matched (drop 133, "Policy denied")
  | "auth-required" // allowed only with mutual authentication, and none is there (drop 189)
  | "l7-denied"; // the proxy refused the request

/** What one direction (the source's egress, or the destination's ingress) decided. */
export interface DirectionDecision {
  readonly direction: Direction;
  /** The endpoint whose policy applies; absent when that side is not a local endpoint. */
  readonly endpoint?: string;
  /** Whether the endpoint enforces policy in this direction. */
  readonly enforced: boolean;
  readonly verdict: "allow" | "deny";
  readonly reason?: DenyReason;
  /** Identity of the remote side as this direction saw it. */
  readonly remoteIdentity: number;
  /** The rule elements that decided (the deny, or the allows that matched). Empty for default deny. */
  readonly decidedBy: readonly RuleOrigin[];
  /** Hubble's policy_match_type: L3-Only, L3-L4, L4-Only, all, none. */
  readonly matchType: "L3-Only" | "L3-L4" | "L4-Only" | "all" | "none";
  /** Set when the connection is redirected to the L7 proxy in this direction. */
  readonly l7?: {
    readonly parser: "http" | "dns" | "kafka" | "tls";
    readonly verdict: "allow" | "deny";
    /** HTTP `headerMatches[].mismatch` actions taken, e.g. `ADD x-env: prod`, `LOG x-token`. */
    readonly headerActions?: readonly string[];
  };
  readonly auth?: AuthMode;
  /**
   * Set when an audit-mode policy would have denied this direction: the
   * connection passes (verdict allow) and is recorded as AUDIT.
   */
  readonly audit?: { readonly reason: DenyReason; readonly decidedBy: readonly RuleOrigin[] };
}

export interface Decision {
  readonly verdict: "allow" | "deny";
  readonly how?: DenyHow;
  readonly egress: DirectionDecision;
  readonly ingress: DirectionDecision;
  /** Source and destination identities. */
  readonly srcIdentity: number;
  readonly dstIdentity: number;
}
