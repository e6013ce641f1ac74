/**
 * The desired datapath state: the contract between the policy engine and the
 * nftables compiler. Plain data, no behaviour; the engine produces it, the
 * Reconciler makes the kernel hold it.
 *
 *   policy engine --DatapathState--> compile() --nft text--> Reconciler --> kernel
 */

import type { HostTableView } from "../ipcache/hosts.js";

/** One (peer identity, protocol, port range) cell of an endpoint's policy in one direction. */
export interface PolicySegment {
  /** Peer identity; 0 = any identity. */
  identity: number;
  /** 6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6; 0 = any protocol (every proto, every port). */
  proto: number;
  /** Inclusive port range (ICMP: type range, 0-255). */
  lo: number;
  hi: number;
  /**
   * audit: let through, logged as a would-be drop (policies in audit mode).
   * redirect: allowed at L4 and handed to the node's proxy (`proxy` says which).
   * auth: allowed once the (source, destination) identity pair is mutually authenticated
   *   (src/auth/: an entry in the auth table's set, or the handshake of the queued first packet).
   */
  action: "allow" | "deny" | "audit" | "redirect" | "auth";
  /** With action "redirect": the TCP L7 proxy (HTTP, Kafka, TLS) or the DNS proxy (UDP and TCP). */
  proxy?: "l7" | "dns";
  /** Index into DatapathState.rules, for logs (0 = none). */
  ruleId: number;
  /** With action "auth": the identity of the endpoint holding the segment (its side of the pair). */
  authSelf?: number;
}

export interface DirectionPolicy {
  /** Default deny: traffic no segment matches is dropped. Otherwise it is accepted. */
  enforced: boolean;
  /** Not enforced, but an audit-mode policy would be: unmatched traffic is accepted and logged as audit. */
  auditDefault?: boolean;
  segments: PolicySegment[];
}

export interface DatapathEndpoint {
  /** Small integer endpoint id, unique on the node. */
  id: number;
  name: string;
  /** The node-side veth of the endpoint. */
  hostIfname: string;
  ipv4?: string;
  ipv6?: string;
  identity: number;
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
}

export interface DatapathState {
  /** CIDR -> identity, longest prefix wins; unmatched addresses are world (2). */
  ipcache: { prefix: string; identity: number }[];
  /**
   * Exact addresses (endpoints of this and other nodes, nodes) -> identity; they
   * override `ipcache`. Kept apart because a cluster has tens of thousands and
   * they change one at a time: the datapath and the proxy take the journal's
   * changes (HostTableView.changesSince) instead of the whole table.
   */
  hosts?: HostTableView;
  endpoints: DatapathEndpoint[];
  /** e.g. "default/rule1 spec.ingress[0]" (<= 40 chars, for NFLOG prefixes). */
  rules: { id: number; text: string }[];
  /** The identity of traffic from the node itself (1). */
  hostIdentity: number;
  /** Where redirected connections go; required when any segment redirects. */
  proxy?: ProxyTarget;
  /**
   * The host firewall (compile-host.ts): the node's own policy for traffic to and
   * from the node itself, from the host policies (nodeSelector) selecting this
   * node. Absent, or a direction with no segment and not enforced: no hook for it.
   */
  host?: HostFirewall;
  /** Mutual authentication is available: the gate chains exist (compile-auth.ts). */
  auth?: boolean;
  /**
   * A Service exists (the LB table translates): service connections skip the policy
   * before their DNAT and are judged after it (compile-lb-policy.ts). Absent: neither
   * the skip rule nor the two base chains, so no packet pays for services unused.
   */
  services?: boolean;
  /**
   * The mTLS node tunnel's group (`--encryption mtls-tunnel`): its connections to local endpoints
   * carry the source identity a peer's certificate proved in their socket mark (SO_MARK), and are
   * judged by the endpoint's ingress with that identity instead of host (compile.ts out_c).
   */
  tunnelGid?: number;
}

export interface HostFirewall {
  ingress: DirectionPolicy;
  egress: DirectionPolicy;
  /** The UDP port of the node's VXLAN overlay (8472), which the firewall never judges; none: native routing. */
  tunnelPort?: number;
}

/**
 * The node's proxy listeners (node addresses) and the group its process runs
 * as: the kernel lets that group's sockets (the proxy's upstream connections)
 * out without a second policy check, since the proxy only connects to the
 * original destination of a connection the kernel already allowed at L3/L4
 * on both ends.
 */
export interface ProxyTarget {
  ipv4?: string;
  ipv6?: string;
  /** TCP port of the L7 proxy (HTTP, Kafka, TLS). */
  l7Port: number;
  /** UDP and TCP port of the DNS proxy. */
  dnsPort: number;
  /**
   * One proxy worker per core (proxy/runtime/workers.ts): the ports of the
   * workers running now; the kernel spreads new connections over them
   * (`numgen`). Absent: `l7Port` / `dnsPort` alone.
   */
  l7Ports?: readonly number[];
  dnsPorts?: readonly number[];
  /** Group id of the proxy process (`meta skgid`). */
  gid: number;
}

export {
  CT_AUTH_NEEDED,
  CT_KEEP_ON_AUTH,
  CT_FROM_HOST,
  CT_PROXY_UPSTREAM,
  CT_REDIRECT_DNS,
  CT_REDIRECT_L7,
  CT_SERVICE,
  IDENTITY_MASK,
  WORLD_IDENTITY,
} from "../abi/marks.js";
