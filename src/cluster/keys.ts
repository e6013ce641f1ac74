/**
 * The layout of cluster state in etcd (cluster mode, `--cluster-store`). One
 * place, so that every writer, reader, the least-privilege setup and the
 * closing note agree.
 *
 * Every key lives under the store prefix (`membrane/`), then `cluster/`:
 *
 *   cluster/nodes/<node>             NodeRecordV1          node lease   the registry: addresses, pod CIDRs, labels, health
 *   cluster/podcidrs/<node>          PodCidrClaimV1        persistent   the node's pod CIDRs (kept across lease loss)
 *   cluster/identities/<node>/<id>   IdentityClaimV1       node lease   "node uses number <id> for these labels"
 *   cluster/ipcache/<node>/<ip>      IpcacheEntryV1        node lease   the node's endpoints: address -> identity
 *   cluster/status/<node>            NodeStatusV1          node lease   realized policy revision, store health
 *   cluster/policies/...             PolicyRecordV2        persistent   written by `membrane apply` (admin role)
 *   cluster/namespaces/<name>        (namespaces.ts)       persistent   written by `membrane apply` (admin role)
 *   cluster/services/<ns>/<name>     (services.ts)         persistent   written by `membrane apply` (admin role)
 *   cluster/lb/services/, lb/slices/ (lb/record.ts)        persistent   Services in the kernel, EndpointSlices (admin role)
 *   cluster/lb/alloc/{ip,node-port}/ "namespace/name"      persistent   their addresses and ports (admin role, lb/reservations.ts)
 *   cluster/lb/gateways/<node>/<ip>  "gateway <node> ..."  own lease    the node's Gateways' own addresses (300 s lease)
 *
 * Ownership and least privilege: a node writes only keys that carry its own
 * name (`nodes/<node>`, `podcidrs/<node>`, `identities/<node>/`,
 * `ipcache/<node>/`, `status/<node>`, `lb/gateways/<node>/`), and reads everything under `cluster/`.
 * etcd roles can grant exactly that (a key, or a prefix ending in `/`), so a
 * node's credentials cannot overwrite another node's endpoints or claims.
 *
 * Claims instead of shared keys. Pod CIDRs and identity numbers are claimed by
 * the node under its own prefix; when two claims conflict (the same number
 * for different labels, overlapping CIDRs), the earliest claim wins,
 * everywhere, deterministically: the smallest etcd modRevision (a rewritten
 * claim is a new one: ranking by createRevision let a node rewrite its old
 * claim with other labels or a wider CIDR and keep its place). A node that claims
 * reads the prefix back after its put (the read is at a revision >= the put's,
 * so it sees every earlier claim) and only then uses what it claimed; a loser
 * withdraws its claim and claims again. Nothing a node writes can take a
 * number or a CIDR away from a node that claimed it first.
 */
import { MembraneError } from "../errors.js";
import type { LbConfig } from "../lb/types.js";

export const CLUSTER = "cluster/";

export const CLUSTER_KEYS = {
  nodes: "cluster/nodes/",
  podCidrs: "cluster/podcidrs/",
  identities: "cluster/identities/",
  ipcache: "cluster/ipcache/",
  status: "cluster/status/",
  policies: "cluster/policies/",
  namespaces: "cluster/namespaces/",
  services: "cluster/services/",
} as const;

/** A node name: a DNS label (1-63 lower-case letters, digits, "-"), as Kubernetes node names usually are. */
const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function validateNodeName(name: string, where = "--node-name"): string {
  if (typeof name !== "string" || !NODE_NAME_RE.test(name)) {
    throw new MembraneError(
      "CLUSTER_INVALID",
      `Cannot use node name ${JSON.stringify(name)} (${where}): use 1-63 lower-case letters, digits and "-", starting and ending alphanumeric`,
    );
  }
  return name;
}

export const nodeKey = (node: string): string => CLUSTER_KEYS.nodes + validateNodeName(node);
export const podCidrKey = (node: string): string => CLUSTER_KEYS.podCidrs + validateNodeName(node);
export const statusKey = (node: string): string => CLUSTER_KEYS.status + validateNodeName(node);
export const identitiesPrefix = (node: string): string =>
  CLUSTER_KEYS.identities + validateNodeName(node) + "/";
export const ipcachePrefix = (node: string): string => CLUSTER_KEYS.ipcache + validateNodeName(node) + "/";

/**
 * Splits `cluster/<kind>/<node>/<rest>` (identities, ipcache) into node and rest; undefined for a key
 * that does not have that shape (ignored by readers, never trusted).
 */
export function splitNodeKey(prefix: string, key: string): { node: string; rest: string } | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const tail = key.slice(prefix.length);
  const slash = tail.indexOf("/");
  if (slash <= 0) return undefined;
  const node = tail.slice(0, slash);
  const rest = tail.slice(slash + 1);
  if (!NODE_NAME_RE.test(node) || rest === "") return undefined;
  return { node, rest };
}

/** `cluster/nodes/<node>` — kept alive by the node's lease. */
export interface NodeRecordV1 {
  readonly v: 1;
  readonly name: string;
  /** The node's underlay addresses (what peers route pod traffic to). */
  readonly addresses: { readonly ipv4?: string; readonly ipv6?: string };
  readonly podCidrs: readonly string[];
  /** `--node-labels`: what nodeSelector, fromNodes and toNodes select on. */
  readonly labels: Readonly<Record<string, string>>;
  /** How peers reach this node's pods. */
  readonly routing: "native" | "vxlan";
  /** Changes on every agent start (peers see a restart). */
  readonly bootId: string;
  /** ISO time of the agent's start. */
  readonly startedAt: string;
  /** Where the agent serves Hubble's Observer API (what `membrane relay` connects to); absent when it does not. */
  readonly hubble?: NodeHubbleV1;
  /** `--encryption wireguard|ipsec`: what peers need to reach this node through its tunnel. */
  readonly encryption?: NodeEncryptionV1;
  /** `--spiffe`: where this node's agent answers mutual-authentication handshakes, and its CA roots. */
  readonly auth?: NodeAuthV1;
  /**
   * The service ranges the agent runs with (--service-cidr, --lb-pool, --node-port-range): what
   * `membrane apply --cluster-store` allocates Services from when not given them. Nodes ignore it.
   */
  readonly lb?: LbConfig;
}

/** A node's side of cross-node mutual authentication (src/auth/cluster.ts); nothing secret. */
export interface NodeAuthV1 {
  /** TCP port of the handshake listener, at the node's underlay addresses. */
  readonly port: number;
  readonly trustDomain: string;
  /** The node's SPIFFE CA root certificates, base64 DER (the other nodes trust them). */
  readonly roots: readonly string[];
}

/** A node's Observer API: its unix socket (reachable on its host) and/or a TCP address (always with TLS). */
export interface NodeHubbleV1 {
  /** Absolute path of the unix socket. */
  readonly socket?: string;
  /** host:port of the TCP+TLS listener. */
  readonly address?: string;
}

/** A node's transparent-encryption endpoint (public material only; private keys never leave the node). */
export type NodeEncryptionV1 = NodeTunnelKeyV1 | NodeMtlsTunnelV1;

/** `--encryption wireguard|ipsec`: the node's public key (the private key never leaves the node). */
export interface NodeTunnelKeyV1 {
  readonly type: "wireguard" | "ipsec";
  /**
   * wireguard: base64 of the x25519 public key (WireGuard's form);
   * ipsec: base64 of the SubjectPublicKeyInfo of the node's EC P-256 key (IKEv2 pins it).
   */
  readonly publicKey: string;
  /** UDP port the node's WireGuard interface listens on, or its IKE port (ESP in UDP: port + 1). */
  readonly port: number;
  /** ISO time the key pair was made (key age in status). */
  readonly keyCreatedAt?: string;
  /**
   * During a key rotation (encryption/rotation.ts): the key this node switches to next, in the
   * form of publicKey. WireGuard peers add it as a second peer without allowed IPs, so the
   * handshake under the new key is answered the moment the node switches; IPsec peers pin it
   * beside publicKey, so the node's new IKE SA under it is accepted.
   */
  readonly nextPublicKey?: string;
  /** `--encryption-node-to-node`: this node sends its own (host) traffic to peers through the tunnel. */
  readonly nodeToNode?: boolean;
}

/**
 * `--encryption mtls-tunnel`: where the node's tunnel listens (its underlay address, this TCP port)
 * and the roots of its own CA (DER, base64): peers accept the SVIDs it presents only if they
 * validate against these, so each node speaks only with what its own CA signed.
 */
export interface NodeMtlsTunnelV1 {
  readonly type: "mtls-tunnel";
  readonly port: number;
  readonly roots: readonly string[];
  /** ISO time the node's newest root was made (key age in status). */
  readonly keyCreatedAt?: string;
}

/**
 * `cluster/podcidrs/<node>` — persistent; the smallest modRevision wins an overlap (a claim rewritten later,
 * e.g. widened to take others' ranges, counts from its rewrite and loses to every claim made before).
 */
export interface PodCidrClaimV1 {
  readonly v: 1;
  readonly ipv4?: string;
  readonly ipv6?: string;
  /** True when allocated from the cluster CIDR (false: configured with --pod-cidr). */
  readonly allocated: boolean;
}

/** `cluster/identities/<node>/<id>` — the node's reference to a cluster identity (its lease collects it). */
export interface IdentityClaimV1 {
  readonly v: 1;
  /** The security-relevant labels, as `source:key=value` strings, sorted. */
  readonly labels: readonly string[];
}

/** `cluster/ipcache/<node>/<ip>` — one endpoint of the node. */
export interface IpcacheEntryV1 {
  readonly v: 1;
  readonly identity: number;
  readonly namespace: string;
  readonly name: string;
  /** The endpoint's labels (Kubernetes form, without source prefixes). */
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  /** The endpoint's named ports (egress rules naming a port resolve it on the destination's). */
  readonly ports?: readonly { name: string; port: number; protocol: "TCP" | "UDP" | "SCTP" }[];
}

/** `cluster/status/<node>` — what the node has realized. */
export interface NodeStatusV1 {
  readonly v: 1;
  /** The etcd revision of the newest cluster resource (policies, namespaces, services) enforced. */
  readonly realizedRevision: number;
  /** ISO time of the last update. */
  readonly at: string;
  readonly lastError?: string;
}
