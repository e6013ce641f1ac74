/**
 * Which identities a peer selector selects.
 *
 *   PeerSelector x Identity --peerSelects--> boolean
 *
 * Endpoint selectors match identity labels; entities match reserved labels;
 * CIDR selectors match only identities of addresses outside the cluster
 * (world and local CIDR/FQDN identities), never pods, host or nodes;
 * FQDN selectors match local identities carrying a matching `fqdn:` label.
 */
import type { Identity } from "../identity/allocator.js";
import { ID, isLocal } from "../identity/reserved.js";
import { containsPrefix, type Prefix } from "../labels/cidr.js";
import { CLUSTER_LABEL } from "../labels/k8s.js";
import { LabelSet } from "../labels/label.js";
import { Selector } from "../labels/selector.js";
import { fqdnMatches } from "./l7/fqdn.js";
import type { Entity, PeerSelector } from "./types.js";

export interface PeerContext {
  readonly cluster: string;
  /** Services by namespace/name, for toServices. */
  readonly services: ReadonlyMap<string, ResolvedService>;
  /** This node's labels (labels/node.ts), for fromNodes / toNodes selecting the host; none: {}. */
  readonly nodeLabels?: LabelSet;
}

/**
 * fromNodes / toNodes: the host by this node's labels; a remote node by the node labels (source k8s)
 * its identity carries (node-addresses.ts: a labelled remote node has a node-local identity of
 * reserved:remote-node and its labels). The reserved remote-node identity (a node without labels)
 * carries none: only a selector that matches an empty label set (`{}`) selects it.
 */
export function nodesSelect(sel: Selector, ident: Identity, ctx: PeerContext): boolean {
  if (ident.id === ID.host) return sel.matches(ctx.nodeLabels ?? LabelSet.EMPTY);
  if (!ident.labels.has("reserved", "remote-node")) return false;
  return sel.matches(LabelSet.from([...ident.labels].filter((l) => l.source === "k8s")));
}

export interface ResolvedService {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /** Pod selector with namespace injected; absent for selector-less services. */
  readonly podSelector?: Selector;
  /** Backend prefixes of a selector-less service. */
  readonly prefixes: readonly Prefix[];
}

const WORLD4: Prefix = { family: 4, addr: 0n, bits: 0 };
const WORLD6: Prefix = { family: 6, addr: 0n, bits: 0 };

/** The prefixes an outside identity stands for (world = 0/0 of its family, both for plain world). */
export function outsidePrefixes(ident: Identity): readonly Prefix[] {
  if (ident.prefix) return [ident.prefix];
  if (ident.id === ID.world) return [WORLD4, WORLD6];
  if (ident.id === ID.worldIPv4) return [WORLD4];
  if (ident.id === ID.worldIPv6) return [WORLD6];
  return [];
}

export function entitySelects(entity: Entity, ident: Identity, cluster: string): boolean {
  const l = ident.labels;
  switch (entity) {
    case "all":
      return true;
    case "none":
      return false;
    case "world":
      return l.has("reserved", "world");
    case "world-ipv4":
      return l.has("reserved", "world-ipv4");
    case "world-ipv6":
      return l.has("reserved", "world-ipv6");
    case "cluster":
      return (
        [ID.host, ID.unmanaged, ID.health, ID.init, ID.remoteNode, ID.kubeApiserver, ID.ingress].includes(
          ident.id as 1,
        ) ||
        l.has("reserved", "remote-node") ||
        l.get("k8s", CLUSTER_LABEL) === cluster
      );
    case "host":
      return ident.id === ID.host;
    default:
      // remote-node, kube-apiserver, init, health, unmanaged, ingress: the reserved label of that name
      return l.has("reserved", entity);
  }
}

export function cidrSelects(prefix: Prefix, except: readonly Prefix[], ident: Identity): boolean {
  if (!isOutside(ident)) return false;
  return outsidePrefixes(ident).some(
    (p) => containsPrefix(prefix, p) && !except.some((e) => containsPrefix(e, p)),
  );
}

/** Outside the cluster: world identities and local CIDR/FQDN identities. */
export function isOutside(ident: Identity): boolean {
  return ident.id === ID.world || ident.id === ID.worldIPv4 || ident.id === ID.worldIPv6 || isLocal(ident.id);
}

export function peerSelects(peer: PeerSelector, ident: Identity, ctx: PeerContext): boolean {
  switch (peer.kind) {
    case "all":
      return true;
    case "endpoints":
      return peer.selector.matches(ident.labels);
    case "entity":
      return entitySelects(peer.entity, ident, ctx.cluster);
    case "nodes":
      return nodesSelect(peer.selector, ident, ctx);
    case "cidr":
      return cidrSelects(peer.prefix, peer.except, ident);
    case "fqdn": {
      if (!isLocal(ident.id)) return false;
      for (const l of ident.labels) {
        if (l.source === "fqdn" && fqdnMatches(peer, l.key)) return true;
      }
      return false;
    }
    case "service": {
      for (const svc of servicesOf(peer, ctx)) {
        if (svc.podSelector && svc.podSelector.matches(ident.labels)) return true;
        if (!svc.podSelector && svc.prefixes.some((p) => cidrSelects(p, [], ident))) return true;
      }
      return false;
    }
  }
}

function servicesOf(peer: Extract<PeerSelector, { kind: "service" }>, ctx: PeerContext): ResolvedService[] {
  if (peer.name !== undefined) {
    const s = ctx.services.get(`${peer.namespace}/${peer.name}`);
    return s ? [s] : [];
  }
  const sel = peer.selector ?? Selector.ALL;
  return [...ctx.services.values()].filter(
    (s) => s.namespace === peer.namespace && sel.matches(LabelSet.fromMap(s.labels)),
  );
}

/** A stable key for a peer selector (the SelectorCache key). */
export function peerKey(peer: PeerSelector): string {
  switch (peer.kind) {
    case "all":
      return "all";
    case "endpoints":
      return "ep:" + peer.selector.toString();
    case "entity":
      return "entity:" + peer.entity;
    case "cidr":
      return `cidr:${prefixKey(peer.prefix)}` + peer.except.map((e) => "!" + prefixKey(e)).join("");
    case "fqdn":
      return peer.matchName !== undefined
        ? `fqdn:name:${peer.matchName}`
        : `fqdn:pattern:${peer.matchPattern}`;
    case "service":
      return `svc:${peer.namespace}/${peer.name ?? ""}/${peer.selector?.toString() ?? ""}`;
    case "nodes":
      return "nodes:" + peer.selector.toString();
  }
}

function prefixKey(p: Prefix): string {
  return `${p.family}:${p.addr.toString(16)}/${p.bits}`;
}
