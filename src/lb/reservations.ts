/**
 * Cluster-wide reservations of what a Service was allocated, one store key each, so that two
 * nodes allocating at once cannot hand out the same thing (as the Kubernetes apiserver's one
 * allocator does):
 *
 *   lb/alloc/ip/<address>               -> "namespace/name"  (ClusterIPs, LoadBalancer addresses)
 *   lb/alloc/node-port/<protocol>/<n>   -> "namespace/name"  (NodePorts, healthCheckNodePort as TCP)
 *   lb/gateways/<node>/<address>        -> "gateway <node> <netns> namespace/name"
 *                                          (cluster mode: a Gateway's own address, agent/gateway-addresses.ts)
 *
 * A Service's record and its reservations are written in one store transaction whose compares
 * say "this reservation does not exist yet" (agent/controllers/lb-reserve.ts); the node that
 * loses the race reads again and takes the next free one. Pure: keys and the in-use view.
 *
 * Why the Gateways' keys are apart and carry the node's name: in cluster mode the Services are
 * written by the cluster's admin (etcd role membrane-admin) and a node's role may write only keys
 * carrying its name (cluster/etcd-setup.ts), so a node can neither take nor delete a Service's
 * reservation nor another node's. One address is still held once: a Gateway's transaction
 * compares `lb/alloc/ip/<address>` absent and nothing under `lb/gateways/` written since its read,
 * a Service's compares the same prefix when it takes a new address (etcd checks a compare against
 * read permission only), so of two that race, the second fails and reads again.
 */
import type { InUse } from "./allocate.js";
import type { LbService } from "./types.js";

/** Store prefix of the reservations (under `lb/`: cluster-wide in cluster mode, resource-store.ts). */
export const ALLOC_KEY = "lb/alloc/";
/** A reserved address: `lb/alloc/ip/<address>` -> its holder. */
export const IP_KEY = `${ALLOC_KEY}ip/`;
const PORT_KEY = `${ALLOC_KEY}node-port/`;
/** Cluster mode: the Gateways' own addresses, `lb/gateways/<node>/<address>` -> its holder. */
export const GATEWAY_KEY = "lb/gateways/";

/** The prefix of one node's Gateway reservations (its etcd role writes only there). */
export const gatewayNodePrefix = (node: string): string => `${GATEWAY_KEY}${node}/`;

/**
 * `[lb/alloc/ip/<address>, holder]` for each Gateway reservation under `lb/gateways/` (what
 * inUseOf takes): keys of another shape are skipped, never trusted.
 */
export function gatewayHolds(kvs: Iterable<{ key: string; value: string }>): [string, string][] {
  const out: [string, string][] = [];
  for (const kv of kvs) {
    const tail = kv.key.slice(GATEWAY_KEY.length);
    const slash = tail.indexOf("/");
    if (!kv.key.startsWith(GATEWAY_KEY) || slash <= 0 || slash === tail.length - 1) continue;
    out.push([IP_KEY + tail.slice(slash + 1), kv.value]);
  }
  return out;
}

/** The reservation keys a Service (as allocated) holds. */
export function reservationKeys(s: LbService): string[] {
  const keys: string[] = [];
  for (const ip of s.clusterIPs ?? [s.clusterIP])
    if (ip !== undefined && ip !== "None") keys.push(IP_KEY + ip);
  for (const ip of s.loadBalancerIPs ?? (s.loadBalancerIP !== undefined ? [s.loadBalancerIP] : []))
    if (ip !== s.clusterIP) keys.push(IP_KEY + ip);
  for (const p of s.ports) if (p.nodePort !== undefined) keys.push(`${PORT_KEY}${p.protocol}/${p.nodePort}`);
  // The health check's port comes from the same range as the NodePorts (TCP).
  if (s.healthCheckNodePort !== undefined) keys.push(`${PORT_KEY}TCP/${s.healthCheckNodePort}`);
  return [...new Set(keys)];
}

/**
 * What is taken: every reservation (key -> holder) and, for records written before reservations
 * existed, what the stored services hold.
 */
export function inUseOf(services: Iterable<LbService>, reservations: Iterable<[string, string]>): InUse {
  const ips = new Map<string, string>();
  const nodePorts = new Map<string, string>();
  const take = (key: string, holder: string): void => {
    if (key.startsWith(IP_KEY)) ips.set(key.slice(IP_KEY.length), holder);
    else if (key.startsWith(PORT_KEY)) nodePorts.set(key.slice(PORT_KEY.length), holder);
  };
  for (const s of services) for (const k of reservationKeys(s)) take(k, `${s.namespace}/${s.name}`);
  for (const [k, holder] of reservations) take(k, holder);
  return { ips, nodePorts };
}

/** Adds what `s` (as allocated) holds to `used` (the next service of the same file sees it taken). */
export function markUsed(used: InUse, s: LbService): void {
  const u = inUseOf([s], []);
  for (const [k, v] of u.ips) (used.ips as Map<string, string>).set(k, v);
  for (const [k, v] of u.nodePorts) (used.nodePorts as Map<string, string>).set(k, v);
}
