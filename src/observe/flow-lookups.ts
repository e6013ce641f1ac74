/**
 * What the flow enricher (enrich.ts) asks the agent about: endpoints, identities, rules, and the
 * optional lookups for Hubble's richer fields (peer pods, nodes, encryption, DNS names, match type).
 */
import type { PolicyMatchName, ServiceRefJSON } from "./flow.js";

export interface EndpointInfo {
  readonly name: string;
  readonly namespace: string;
  /** `source:key=value` strings. */
  readonly labels: readonly string[];
  readonly identity: number;
}

export interface RuleInfo {
  readonly policy: { readonly kind: string; readonly name: string; readonly namespace?: string };
  /** Field path of the rule element, e.g. `spec.ingressDeny[0]`. */
  readonly path: string;
  readonly matchType?: PolicyMatchName;
  /** Policy revision the rule came from. */
  readonly revision?: number;
}

/** What the agent knows; every method may answer undefined (the thing is gone or unknown). */
export interface FlowLookup {
  endpointById(id: number): EndpointInfo | undefined;
  identityById(id: number): { readonly labels: readonly string[] } | undefined;
  ipIdentity(ip: string): number | undefined;
  ruleById(id: number): RuleInfo | undefined;
  /** A local endpoint holding this address (names the peer pod). Optional. */
  endpointByIp?(ip: string): (EndpointInfo & { readonly id: number }) | undefined;
  /** Cluster mode: the other node whose pods hold this address (src/cluster/node-of-ip.ts). Optional. */
  nodeOfIp?(ip: string): string | undefined;
  /**
   * --encryption: traffic with this peer address goes through the node's tunnel (mtls-tunnel:
   * TCP only, so `tcp` says whether the flow is TCP). Optional.
   */
  encryptedPeer?(ip: string, tcp: boolean, identity: number): boolean;
  /**
   * --encryption mtls-tunnel, receiving side: the source pod of a TCP connection the node's tunnel
   * opened from local port `sourcePort` to a local pod (the tunnel connects from the pod gateway
   * under the source's identity; the peer named the pod and the agent checked it). Optional.
   */
  tunnelOrigin?(
    destination: string,
    destinationPort: number,
    sourcePort: number,
  ): { readonly ip: string; readonly identity: number } | undefined;
  /** Names the DNS proxy learned for this address (Hubble's source_names / destination_names). Optional. */
  namesOfIp?(ip: string): readonly string[] | undefined;
  /**
   * Hubble's policy_match_type of a policy verdict: which kind of entry of the endpoint's policy
   * matched (L3-Only, L3-L4, L4-Only, all), looked up for the remote identity, protocol and port.
   * Optional; undefined when unknown (then the rule's own matchType, else none).
   */
  matchTypeOf?(q: MatchQuery): PolicyMatchName | undefined;
  /**
   * The Service answering on a frontend (Hubble's source_service / destination_service): a ClusterIP
   * or LoadBalancer address . protocol . port, or with `nodePort` a NodePort (any node address). Optional.
   */
  serviceAt?(ip: string, proto: number, port: number, nodePort?: boolean): ServiceRefJSON | undefined;
}

/** What a policy verdict's match type is looked up by (FlowLookup.matchTypeOf). */
export interface MatchQuery {
  readonly endpointId: number;
  readonly ingress: boolean;
  readonly remoteIdentity: number;
  /** IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP). */
  readonly proto: number;
  /** Destination port; ICMP: the type. */
  readonly port: number;
}
