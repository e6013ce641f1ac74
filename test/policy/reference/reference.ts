/**
 * A naive reference evaluator: the L3/L4 verdict computed straight from the
 * rules, with no MapState, no SelectorCache, no caching. It is the spec the
 * property test holds the real engine to (Cilium checks its MapState against
 * a naive evaluator in the same way).
 *
 *   world (endpoints, outside identities) + PolicyResource[] + query  --referenceDecide-->  allow | deny
 *
 * Scope: L3/L4 only. No L7, services, FQDN, named ports or requires; ICMP
 * rules assumed enabled. Written as plainly as possible, on purpose: nested
 * loops, one question per function.
 *
 * Choices where the brief was silent (see the report):
 * - A matching deny beats the implicit "allow ingress from the local host"
 *   (Cilium inserts that allow with deny precedence: denyPreferredInsert).
 * - The host (identity 1) is the subject of nodeSelector rules (host
 *   firewall; node labels are empty here, so only an empty nodeSelector
 *   selects it); mode `always` does not apply to it (as in Cilium without
 *   the host firewall).
 */
import type { EngineConfig } from "../../../src/policy/query.js";
import type { Direction, PeerSelector, PolicyResource, RuleElement } from "../../../src/policy/types.js";
import { containsPrefix, type Prefix } from "../../../src/labels/cidr.js";
import { LabelSet } from "../../../src/labels/label.js";
import { nodeLabelSet } from "../../../src/labels/node.js";

export interface RefEndpoint {
  readonly name: string;
  readonly namespace: string;
  /** The full derived label set (user labels, namespace, service account, cluster, namespace labels). */
  readonly labels: LabelSet;
  readonly identity: number;
  readonly ips: readonly string[];
}

export interface RefIdentity {
  readonly id: number;
  readonly labels: LabelSet;
  readonly prefix?: Prefix;
}

export interface RefWorld {
  readonly config: EngineConfig;
  /** Names are unique across namespaces. */
  readonly endpoints: readonly RefEndpoint[];
  /** The identity the node gives an address that is not a local endpoint. */
  readonly outsideIdentity: (ip: string) => RefIdentity;
}

export interface RefSide {
  readonly identity: number;
  readonly labels: LabelSet;
  /** Set when this side is a local endpoint (its name). */
  readonly endpoint?: string;
  /** For outside CIDR identities: the prefix the identity stands for. */
  readonly prefix?: Prefix;
}

export interface RefQuery {
  readonly src: RefSide;
  readonly dst: RefSide;
  /** 6 TCP, 17 UDP, 132 SCTP, 1 ICMP, 58 ICMPv6. */
  readonly proto: 6 | 17 | 132 | 1 | 58;
  /** Destination port; the ICMP type for ICMP. */
  readonly port: number;
}

export type RefReason = "policy-denied" | "default-deny";

export interface RefDirection {
  readonly verdict: "allow" | "deny";
  readonly reason?: RefReason;
}

export interface RefDecision extends RefDirection {
  readonly egress: RefDirection;
  readonly ingress: RefDirection;
}

const ALLOW: RefDirection = { verdict: "allow" };
const HOST_ID = 1;

export function referenceDecide(
  world: RefWorld,
  resources: readonly PolicyResource[],
  q: RefQuery,
): RefDecision {
  let egress = ALLOW;
  if (isSubject(world, q.src)) {
    egress = decideDirection(world, resources, q.src, "egress", q.dst, q.proto, q.port);
  }
  let ingress = ALLOW;
  if (isSubject(world, q.dst)) {
    ingress = decideDirection(world, resources, q.dst, "ingress", q.src, q.proto, q.port);
  }
  if (egress.verdict === "deny") return { ...egress, egress, ingress };
  if (ingress.verdict === "deny") return { ...ingress, egress, ingress };
  return { verdict: "allow", egress, ingress };
}

/** Local endpoints have policy; so does the host (host firewall). */
function isSubject(world: RefWorld, side: RefSide): boolean {
  if (side.identity === HOST_ID && side.endpoint === undefined) return true;
  if (side.endpoint === undefined) return false;
  for (const ep of world.endpoints) {
    if (ep.name === side.endpoint) return true;
  }
  throw new Error(`reference: no endpoint named ${side.endpoint}`);
}

function decideDirection(
  world: RefWorld,
  resources: readonly PolicyResource[],
  subject: RefSide,
  direction: Direction,
  peer: RefSide,
  proto: number,
  port: number,
): RefDirection {
  const config = world.config;
  if (config.policyEnforcementMode === "never") return ALLOW;

  const isHost = subject.endpoint === undefined;
  const nodeLabels = nodeLabelSet(config.nodeLabels ?? {});

  // Rules selecting the subject.
  const allows: RuleElement[] = [];
  const denies: RuleElement[] = [];
  let defaultDeny = false;
  for (const res of resources) {
    for (const rule of res.rules) {
      let selected: boolean;
      if (isHost) selected = rule.selectsNodes && rule.subject.matches(nodeLabels);
      else selected = !rule.selectsNodes && rule.subject.matches(subject.labels);
      if (!selected) continue;
      if (rule.defaultDeny[direction]) defaultDeny = true;
      if (direction === "ingress") {
        for (const el of rule.ingress) allows.push(el);
        for (const el of rule.ingressDeny) denies.push(el);
      } else {
        for (const el of rule.egress) allows.push(el);
        for (const el of rule.egressDeny) denies.push(el);
      }
    }
  }
  // `always` applies to workload endpoints; the host only to host-firewall rules.
  const enforced = (config.policyEnforcementMode === "always" && !isHost) || defaultDeny;

  for (const el of denies) {
    if (elementMatches(config, el, peer, proto, port)) return { verdict: "deny", reason: "policy-denied" };
  }
  if (direction === "ingress" && peer.identity === HOST_ID && config.allowLocalhost === "always")
    return ALLOW;
  for (const el of allows) {
    if (elementMatches(config, el, peer, proto, port)) return ALLOW;
  }
  if (enforced) return { verdict: "deny", reason: "default-deny" };
  return ALLOW;
}

function elementMatches(
  config: EngineConfig,
  el: RuleElement,
  peer: RefSide,
  proto: number,
  port: number,
): boolean {
  let peerOk = false;
  for (const p of el.peers) {
    if (peerMatches(config, p, peer)) peerOk = true;
  }
  if (!peerOk) return false;
  return portMatches(el, proto, port);
}

function portMatches(el: RuleElement, proto: number, port: number): boolean {
  const hasPorts = el.ports !== undefined && el.ports.length > 0;
  const hasIcmps = el.icmps !== undefined && el.icmps.length > 0;
  if (!hasPorts && !hasIcmps) return true; // L3-only: every protocol and port, ICMP included
  for (const pr of el.ports ?? []) {
    for (const pp of pr.ports) {
      let protoOk = false;
      if (pp.protocol === "ANY") protoOk = proto === 6 || proto === 17 || proto === 132;
      if (pp.protocol === "TCP") protoOk = proto === 6;
      if (pp.protocol === "UDP") protoOk = proto === 17;
      if (pp.protocol === "SCTP") protoOk = proto === 132;
      if (!protoOk) continue;
      if (pp.port === 0) return true;
      if (pp.port <= port && port <= pp.endPort) return true;
    }
  }
  for (const f of el.icmps ?? []) {
    if (f.family === "IPv4" && proto === 1 && f.type === port) return true;
    if (f.family === "IPv6" && proto === 58 && f.type === port) return true;
  }
  return false;
}

function peerMatches(config: EngineConfig, p: PeerSelector, peer: RefSide): boolean {
  const l = peer.labels;
  switch (p.kind) {
    case "all":
      return true;
    case "endpoints":
      return p.selector.matches(l);
    case "entity":
      switch (p.entity) {
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
        case "host":
          return peer.identity === HOST_ID;
        case "cluster":
          if ([1, 3, 4, 5, 6, 7, 8].includes(peer.identity)) return true;
          return l.get("k8s", "io.cilium.k8s.policy.cluster") === config.cluster;
        default:
          // remote-node, kube-apiserver, init, health, unmanaged, ingress
          return l.has("reserved", p.entity);
      }
    case "cidr": {
      const prefixes: Prefix[] = [];
      if (peer.prefix !== undefined) prefixes.push(peer.prefix);
      else if (peer.identity === 2) prefixes.push(WORLD4, WORLD6);
      else if (peer.identity === 9) prefixes.push(WORLD4);
      else if (peer.identity === 10) prefixes.push(WORLD6);
      for (const ip of prefixes) {
        if (!containsPrefix(p.prefix, ip)) continue;
        let excepted = false;
        for (const e of p.except) if (containsPrefix(e, ip)) excepted = true;
        if (!excepted) return true;
      }
      return false;
    }
    case "nodes":
      if (peer.identity === HOST_ID) return p.selector.matches(nodeLabelSet(config.nodeLabels ?? {}));
      if (!l.has("reserved", "remote-node")) return false;
      return p.selector.matches(LabelSet.from([...l].filter((x) => x.source === "k8s")));
    case "fqdn":
    case "service":
      throw new Error(`reference: ${p.kind} peers are out of scope`);
  }
}

const WORLD4: Prefix = { family: 4, addr: 0n, bits: 0 };
const WORLD6: Prefix = { family: 6, addr: 0n, bits: 0 };
