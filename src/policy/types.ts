/**
 * The normalised form of policy that the core computes on.
 *
 *   YAML (CNP / CCNP / KNP)  --policy/api.parsePolicies-->  PolicyResource[]  --Repository-->  ...
 *
 * Everything here is already validated and already scoped: namespace labels
 * are injected into selectors, NetworkPolicy is translated into Cilium rules,
 * `toCIDR` has become a CIDR peer, FQDN names are lower-case with a trailing
 * dot. The core never looks at raw YAML again (STYLE.md §1).
 */
import type { Prefix } from "../labels/cidr.js";
import type { Requirement, Selector } from "../labels/selector.js";

export type Direction = "ingress" | "egress";
export type PolicyKind = "CiliumNetworkPolicy" | "CiliumClusterwideNetworkPolicy" | "NetworkPolicy";

/** Which policy a rule came from: what flows and traces name. */
export interface PolicyRef {
  readonly kind: PolicyKind;
  readonly name: string;
  /** Absent for cluster-wide policies. */
  readonly namespace?: string;
}

export function policyRefString(p: PolicyRef): string {
  return p.namespace === undefined ? p.name : `${p.namespace}/${p.name}`;
}

/** Where in a policy a rule element sits, for explanations. */
export interface RuleOrigin {
  readonly policy: PolicyRef;
  /** Field path of the element inside the document, e.g. `spec.ingress[0]` or `specs[1].egressDeny[2]`. */
  readonly path: string;
  readonly deny: boolean;
  /** The rule's description, when it had one. */
  readonly description?: string;
}

export type Entity =
  | "all"
  | "world"
  | "world-ipv4"
  | "world-ipv6"
  | "cluster"
  | "host"
  | "remote-node"
  | "kube-apiserver"
  | "init"
  | "health"
  | "unmanaged"
  | "ingress"
  | "none";

export const ENTITIES: readonly Entity[] = [
  "all",
  "world",
  "world-ipv4",
  "world-ipv6",
  "cluster",
  "host",
  "remote-node",
  "kube-apiserver",
  "init",
  "health",
  "unmanaged",
  "ingress",
  "none",
];

/**
 * One peer of a rule element. The engine decides which identities each
 * selects (policy/peer.ts); an element's peers are ORed.
 */
export type PeerSelector =
  /** from/toEndpoints, KNP podSelector/namespaceSelector: namespace already injected. */
  | { readonly kind: "endpoints"; readonly selector: Selector }
  | { readonly kind: "entity"; readonly entity: Entity }
  /** from/toCIDR, from/toCIDRSet, KNP ipBlock. Never selects pods, host or nodes. */
  | { readonly kind: "cidr"; readonly prefix: Prefix; readonly except: readonly Prefix[] }
  /** toFQDNs; names lower-case with trailing dot. */
  | { readonly kind: "fqdn"; readonly matchName?: string; readonly matchPattern?: string }
  /** toServices: by name or by label selector of services, in `namespace`. */
  | {
      readonly kind: "service";
      readonly namespace: string;
      readonly name?: string;
      readonly selector?: Selector;
    }
  /**
   * fromNodes / toNodes: nodes whose labels the selector matches (Cilium's node selector labels):
   * the local node (host identity) by its own labels, remote nodes by the labels their identity carries.
   */
  | { readonly kind: "nodes"; readonly selector: Selector }
  /** Every identity, world and host included (an element with ports but no L3 field; KNP without peers). */
  | { readonly kind: "all" };

/**
 * The extended IP protocols Cilium accepts in `toPorts[].ports[].protocol`
 * (pkg/policy/api/l4.go isExtendedIPProtocol): they have no transport ports,
 * so a rule names the protocol with port 0 (or none) and the kernel matches
 * it by protocol number alone.
 */
export const EXTENDED_PROTOCOLS = ["VRRP", "IGMP", "GRE", "IPIP", "ESP", "AH"] as const;
export type ExtendedProtocol = (typeof EXTENDED_PROTOCOLS)[number];

export type Protocol = "TCP" | "UDP" | "SCTP" | "ICMP" | "ICMPv6" | ExtendedProtocol | "ANY";

export const PROTO_NUMBER: Readonly<Record<Exclude<Protocol, "ANY">, number>> = {
  TCP: 6,
  UDP: 17,
  SCTP: 132,
  ICMP: 1,
  ICMPv6: 58,
  IGMP: 2,
  IPIP: 4,
  GRE: 47,
  ESP: 50,
  AH: 51,
  VRRP: 112,
};

export const isExtendedProtocol = (p: string): p is ExtendedProtocol =>
  (EXTENDED_PROTOCOLS as readonly string[]).includes(p);

/** One port (range) of a toPorts entry. */
export interface PortProtocol {
  /** TCP | UDP | SCTP | ANY (ANY = TCP, UDP and SCTP) | an extended protocol (port 0: it has no ports). */
  readonly protocol: Protocol;
  /** 0 = every port of the protocol. Unset when `name` is set. */
  readonly port: number;
  /** Inclusive upper bound; equals `port` for a single port. */
  readonly endPort: number;
  /** A named port (lower-case), resolved against workloads' container ports by the engine. */
  readonly name?: string;
}

export type MismatchAction = "LOG" | "ADD" | "DELETE" | "REPLACE";
export const MISMATCH_ACTIONS: readonly MismatchAction[] = ["LOG", "ADD", "DELETE", "REPLACE"];

export interface HeaderMatch {
  readonly name: string;
  /** Exact value; absent = the header must be present. */
  readonly value?: string;
  /**
   * `headerMatches[].mismatch` (Cilium's MismatchAction): when set, a mismatch
   * does not deny; the proxy logs it (LOG), adds the value (ADD), removes the
   * header (DELETE) or sets the value (REPLACE), and forwards the result.
   */
  readonly mismatch?: MismatchAction;
}

/** An HTTP rule: every field present must match (AND); regexes match the whole string. */
export interface HttpRule {
  readonly method?: string;
  readonly path?: string;
  readonly host?: string;
  readonly headers: readonly HeaderMatch[];
}

export interface DnsRule {
  readonly matchName?: string;
  readonly matchPattern?: string;
}

export interface KafkaRule {
  readonly role?: "produce" | "consume";
  readonly apiKey?: string;
  readonly apiVersion?: number;
  readonly clientID?: string;
  readonly topic?: string;
}

export type L7Rules =
  | { readonly kind: "http"; readonly rules: readonly HttpRule[] }
  | { readonly kind: "dns"; readonly rules: readonly DnsRule[] }
  | { readonly kind: "kafka"; readonly rules: readonly KafkaRule[] };

export interface TlsContext {
  readonly secret: { readonly namespace?: string; readonly name: string };
  readonly trustedCA?: string;
  readonly certificate?: string;
  readonly privateKey?: string;
}

export interface PortRule {
  readonly ports: readonly PortProtocol[];
  readonly l7?: L7Rules;
  /** SNI patterns (lower-case; `*` and `**.` as in FQDN patterns). */
  readonly serverNames?: readonly string[];
  readonly terminatingTLS?: TlsContext;
  readonly originatingTLS?: TlsContext;
}

export interface IcmpField {
  readonly family: "IPv4" | "IPv6";
  readonly type: number;
}

export type AuthMode = "required" | "disabled" | "test-always-fail";

/** One item of ingress / egress / ingressDeny / egressDeny. */
export interface RuleElement {
  readonly origin: RuleOrigin;
  /** ORed. Empty = selects nothing (e.g. `fromEndpoints: []`, or `{}` as "allow nothing"). */
  readonly peers: readonly PeerSelector[];
  /**
   * fromRequires / toRequires of this element: ANDed into every `endpoints`
   * peer of every rule of the same direction that selects the same subject.
   */
  readonly requires: readonly Requirement[];
  /** Absent = L3-only: every protocol and port. */
  readonly ports?: readonly PortRule[];
  /** ICMP types allowed/denied (an element has either ports or icmps, not both). */
  readonly icmps?: readonly IcmpField[];
  readonly auth?: AuthMode;
}

export interface Rule {
  readonly policy: PolicyRef;
  /** `spec` or `specs[i]`. */
  readonly path: string;
  /** Subject endpoints; a CNP's own namespace is already injected. */
  readonly subject: Selector;
  /** nodeSelector rule (host firewall, CCNP only): the subject is the host endpoint. */
  readonly selectsNodes: boolean;
  readonly ingress: readonly RuleElement[];
  readonly ingressDeny: readonly RuleElement[];
  readonly egress: readonly RuleElement[];
  readonly egressDeny: readonly RuleElement[];
  /** Whether this rule puts its subjects into default deny, per direction (after enableDefaultDeny). */
  readonly defaultDeny: { readonly ingress: boolean; readonly egress: boolean };
  readonly description?: string;
}

/** One parsed document (one CNP, CCNP or KNP). */
export interface PolicyResource {
  readonly ref: PolicyRef;
  readonly rules: readonly Rule[];
  /** Where it was read from, for messages. */
  readonly source?: { readonly file: string; readonly line: number };
  /** Membrane extension: annotation `policy.membrane.io/audit: "true"` — drops are only recorded. */
  readonly audit: boolean;
}
