/**
 * The authenticated pairs as the agent keeps them, and where their ends live.
 *
 *   Pair: (source identity, destination identity, source node, destination node)
 *     kernel key: src . dst . a pod CIDR of the source node . one of the destination node
 *     (datapath/auth-table.ts); one node: every address is this node's (0.0.0.0/0, ::/0)
 *   AuthNodes: which node owns an address, its pod CIDRs, its handshake port (auth/cluster.ts)
 */
import type { AuthPairEntry } from "../datapath/auth-table.js";

export interface AuthNodes {
  /** This node's name. */
  readonly self: string;
  /** The node owning a pod address (its pod CIDR); undefined: no node of the cluster. */
  nodeOf(ip: string): string | undefined;
  /** A node's pod CIDRs. */
  netsOf(node: string): readonly string[];
  /** Where a peer node's agent answers handshakes. */
  peerAddress(node: string): { host: string; port: number } | undefined;
  /** The node whose underlay address is `ip` (a handshake's client). */
  nodeAt(ip: string): string | undefined;
  /** The root certificates a peer node publishes (what its node certificate and SVIDs must chain to). */
  rootsOf(node: string): readonly Buffer[];
}

export interface Pair {
  readonly src: number;
  readonly dst: number;
  /** Undefined for a pair adopted from the kernel after a restart (only its CIDRs are known). */
  readonly srcNode?: string;
  readonly dstNode?: string;
  readonly srcNets: readonly string[];
  readonly dstNets: readonly string[];
  expiresMs: number;
  /** Chains the peer(s) presented: re-checked when the bundle changes. */
  chains: Buffer[][];
  /** Serial of each SVID of this node used: a rotated one means authenticating again. */
  serials: Map<number, string>;
  /** Addresses the pair's connections may use (filled when it goes, for the cut). */
  readonly srcIps: Set<string>;
  readonly dstIps: Set<string>;
}

export interface AuthPairView {
  readonly source: number;
  readonly destination: number;
  /** The node of the other end (this node's name for a pair of two local endpoints). */
  readonly node: string;
  readonly sourceNode: string;
  readonly destinationNode: string;
  readonly expires: string;
}

export const pairKey = (p: Pick<Pair, "src" | "dst" | "srcNets" | "dstNets">): string =>
  `${p.src}.${p.dst}.${p.srcNets.join(",")}.${p.dstNets.join(",")}`;

const ANY = ["0.0.0.0/0", "::/0"] as const;

/** One node: every address is this node's. */
export function singleNode(self: string): AuthNodes {
  return {
    self,
    nodeOf: () => self,
    netsOf: () => ANY,
    peerAddress: () => undefined,
    nodeAt: () => undefined,
    rootsOf: () => [],
  };
}

/** The kernel's elements as pairs (one line per source/destination pair and node pair). */
export function pairView(
  entries: readonly AuthPairEntry[],
  known: readonly Pair[],
  nodes: AuthNodes,
  now: number,
): AuthPairView[] {
  const seen = new Map<string, AuthPairView>();
  for (const e of entries) {
    const p = known.find((k) => k.src === e.src && k.dst === e.dst && k.srcNets.includes(e.srcNet) && k.dstNets.includes(e.dstNet)); // prettier-ignore
    const first = (net: string): string => net.slice(0, net.indexOf("/"));
    const sn =
      p?.srcNode ?? (e.srcNet.endsWith("/0") ? nodes.self : (nodes.nodeOf(first(e.srcNet)) ?? e.srcNet));
    const dn =
      p?.dstNode ?? (e.dstNet.endsWith("/0") ? nodes.self : (nodes.nodeOf(first(e.dstNet)) ?? e.dstNet));
    const k = `${e.src}.${e.dst}.${sn}.${dn}`;
    if (seen.has(k)) continue;
    const node = sn === nodes.self ? dn : sn;
    seen.set(k, { source: e.src, destination: e.dst, node, sourceNode: sn, destinationNode: dn, expires: new Date(now + e.expiresSeconds * 1000).toISOString() }); // prettier-ignore
  }
  return [...seen.values()].sort((a, b) => a.source - b.source || a.destination - b.destination || a.node.localeCompare(b.node)); // prettier-ignore
}

/** The addresses of each identity's endpoints on this node. */
export function ipsByIdentity(
  endpoints: readonly { ip: string; identity: number }[],
): Map<number, Set<string>> {
  const m = new Map<number, Set<string>>();
  for (const e of endpoints) {
    const s = m.get(e.identity) ?? new Set<string>();
    s.add(e.ip);
    m.set(e.identity, s);
  }
  return m;
}
