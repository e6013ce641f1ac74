/**
 * Reserved identities, with Cilium's numbers (DESIGN.md "Fixed points").
 */
import { LabelSet } from "../labels/label.js";

export const ID = {
  unknown: 0,
  host: 1,
  world: 2,
  unmanaged: 3,
  health: 4,
  init: 5,
  remoteNode: 6,
  kubeApiserver: 7,
  ingress: 8,
  worldIPv4: 9,
  worldIPv6: 10,
} as const;

/** First cluster-scoped identity. */
export const CLUSTER_ID_MIN = 256;
export const CLUSTER_ID_MAX = 65535;
/** Local (node-scoped) identities for CIDR and FQDN peers: bit 24 set. */
export const LOCAL_ID_MIN = 1 << 24;
export const LOCAL_ID_MAX = (1 << 25) - 1;

const reserved = (...names: string[]): LabelSet =>
  LabelSet.from(names.map((key) => ({ source: "reserved", key, value: "" })));

/** Labels of each reserved identity. kube-apiserver also carries remote-node, as in Cilium. */
export const RESERVED_LABELS: ReadonlyMap<number, LabelSet> = new Map([
  [ID.host, reserved("host")],
  [ID.world, reserved("world")],
  [ID.unmanaged, reserved("unmanaged")],
  [ID.health, reserved("health")],
  [ID.init, reserved("init")],
  [ID.remoteNode, reserved("remote-node")],
  [ID.kubeApiserver, reserved("kube-apiserver", "remote-node")],
  [ID.ingress, reserved("ingress")],
  [ID.worldIPv4, reserved("world", "world-ipv4")],
  [ID.worldIPv6, reserved("world", "world-ipv6")],
]);

export const RESERVED_NAMES: ReadonlyMap<number, string> = new Map([
  [ID.host, "host"],
  [ID.world, "world"],
  [ID.unmanaged, "unmanaged"],
  [ID.health, "health"],
  [ID.init, "init"],
  [ID.remoteNode, "remote-node"],
  [ID.kubeApiserver, "kube-apiserver"],
  [ID.ingress, "ingress"],
  [ID.worldIPv4, "world-ipv4"],
  [ID.worldIPv6, "world-ipv6"],
]);

/** The reserved identities every engine knows from the start (world-ipv4/-ipv6 when dual-stack). */
export function reservedIds(dualStack: boolean): number[] {
  const { host, world, unmanaged, health, init, remoteNode, kubeApiserver, ingress } = ID;
  const ids: number[] = [host, world, unmanaged, health, init, remoteNode, kubeApiserver, ingress];
  return dualStack ? [...ids, ID.worldIPv4, ID.worldIPv6] : ids;
}

export function isReserved(id: number): boolean {
  return id > 0 && id < CLUSTER_ID_MIN;
}

export function isLocal(id: number): boolean {
  return id >= LOCAL_ID_MIN && id <= LOCAL_ID_MAX;
}
