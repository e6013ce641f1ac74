/**
 * Builds one random world three ways: the PolicyResource objects, the real
 * PolicyEngine fed with them, and the naive reference's view of the world.
 *
 *   WorldSpec --buildPolicies--> PolicyResource[]
 *             --buildEngine----> PolicyEngine (real)
 *             --buildReference-> RefWorld + sides (naive, independent of the engine)
 */
import {
  DEFAULT_ENGINE_CONFIG,
  type EngineConfig,
  type FlowQuery,
  type PeerRef,
} from "../../../src/policy/query.js";
import type {
  PeerSelector,
  PolicyRef,
  PolicyResource,
  PortRule,
  RuleElement,
} from "../../../src/policy/types.js";
import { Selector, type Requirement } from "../../../src/labels/selector.js";
import { containsAddr, parsePrefix, prefixString, type Prefix } from "../../../src/labels/cidr.js";
import { LabelSet } from "../../../src/labels/label.js";
import { workloadLabels } from "../../../src/labels/k8s.js";
import { PolicyEngine } from "../../../src/policy/engine.js";
import type { RefIdentity, RefQuery, RefSide, RefWorld } from "./reference.js";
import {
  APISERVER_IP,
  NAMESPACES,
  REMOTE_NODE_IP,
  type ElemSpec,
  type PeerSpec,
  type QuerySpec,
  type ReqSpec,
  type SideSpec,
  type WorldSpec,
} from "./gen.js";

export function engineConfig(w: WorldSpec): EngineConfig {
  return { ...DEFAULT_ENGINE_CONFIG, ...w.config, dualStack: false, enableICMPRules: true };
}

const selectorOf = (reqs: readonly ReqSpec[]): Selector =>
  new Selector(
    reqs.map((r): Requirement => ({ source: r.source, key: r.key, operator: r.op, values: r.values })),
  );

function peerOf(p: PeerSpec): PeerSelector {
  switch (p.kind) {
    case "endpoints":
      return { kind: "endpoints", selector: selectorOf(p.reqs) };
    case "entity":
      return { kind: "entity", entity: p.entity };
    case "cidr":
      return {
        kind: "cidr",
        prefix: parsePrefix(p.cidr) as Prefix,
        except: p.except.map((e) => parsePrefix(e) as Prefix),
      };
    case "all":
      return { kind: "all" };
  }
}

function elementOf(e: ElemSpec, policy: PolicyRef, path: string, deny: boolean): RuleElement {
  const base = { origin: { policy, path, deny }, peers: e.peers.map(peerOf), requires: [] };
  if (e.l4.kind === "ports") {
    const ports: PortRule[] = e.l4.rules.map((pr) => ({
      ports: pr.map((p) => ({ protocol: p.protocol, port: p.range[0], endPort: p.range[1] })),
    }));
    return { ...base, ports };
  }
  if (e.l4.kind === "icmps") return { ...base, icmps: e.l4.fields };
  return base;
}

export function buildPolicies(w: WorldSpec): PolicyResource[] {
  return w.policies.map((rules, i) => {
    const ref: PolicyRef = { kind: "CiliumClusterwideNetworkPolicy", name: `p${i}` };
    return {
      ref,
      audit: false,
      rules: rules.map((r, j) => {
        const at = `specs[${j}]`;
        const els = (list: ElemSpec[], field: string, deny: boolean): RuleElement[] =>
          list.map((e, k) => elementOf(e, ref, `${at}.${field}[${k}]`, deny));
        return {
          policy: ref,
          path: at,
          subject: selectorOf(r.subject),
          selectsNodes: r.selectsNodes,
          ingress: els(r.ingress, "ingress", false),
          ingressDeny: els(r.ingressDeny, "ingressDeny", true),
          egress: els(r.egress, "egress", false),
          egressDeny: els(r.egressDeny, "egressDeny", true),
          defaultDeny: {
            ingress: r.enableDefaultDeny.ingress && r.ingress.length + r.ingressDeny.length > 0,
            egress: r.enableDefaultDeny.egress && r.egress.length + r.egressDeny.length > 0,
          },
        };
      }),
    };
  });
}

const nsName = (w: WorldSpec, i: number): string => NAMESPACES[i % w.namespaces.length] as string;
const epName = (i: number): string => `e${i}`;
const epIp = (i: number): string => `10.244.0.${i + 1}`;
const epLabels = (e: WorldSpec["endpoints"][number]): Record<string, string> => ({
  ...(e.app ? { app: e.app } : {}),
  ...(e.tier ? { tier: e.tier } : {}),
});
const nsLabels = (w: WorldSpec, i: number): Record<string, string> => {
  const env = w.namespaces[i % w.namespaces.length]?.env;
  return env ? { env } : {};
};

/** The real engine, fed the world in the order the spec says. Returns endpoint identity numbers too. */
export function buildEngine(
  w: WorldSpec,
  policies: readonly PolicyResource[],
): { engine: PolicyEngine; ids: number[] } {
  const engine = new PolicyEngine({ config: engineConfig(w) });
  const ids: number[] = [];
  const addPolicies = (): void => {
    for (const p of policies) engine.upsertPolicy(p);
  };
  if (w.policiesFirst) addPolicies();
  w.namespaces.forEach((_, i) => engine.setNamespace(nsName(w, i), nsLabels(w, i)));
  w.endpoints.forEach((e, i) => {
    const ident = engine.upsertEndpoint({
      name: epName(i),
      namespace: nsName(w, e.ns),
      labels: epLabels(e),
      ips: [epIp(i)],
    });
    ids.push(ident.id);
  });
  engine.setNodeAddress(REMOTE_NODE_IP, "remote-node");
  engine.setNodeAddress(APISERVER_IP, "kube-apiserver");
  if (!w.policiesFirst) addPolicies();
  return { engine, ids };
}

const reserved = (...keys: string[]): LabelSet =>
  LabelSet.from(keys.map((key) => ({ source: "reserved", key, value: "" })));

/** The reference's view of the world, computed naively and independently of the engine. */
export function buildReference(
  w: WorldSpec,
  policies: readonly PolicyResource[],
  ids: readonly number[],
): RefWorld {
  const config = engineConfig(w);
  // Every prefix any CIDR peer names (its cidr and its excepts), except /0 which is world itself.
  const referenced: Prefix[] = [];
  for (const p of policies) {
    for (const r of p.rules) {
      for (const el of [...r.ingress, ...r.ingressDeny, ...r.egress, ...r.egressDeny]) {
        for (const peer of el.peers) {
          if (peer.kind !== "cidr") continue;
          for (const q of [peer.prefix, ...peer.except]) if (q.bits > 0) referenced.push(q);
        }
      }
    }
  }
  const outsideIdentity = (ip: string): RefIdentity => {
    if (ip === REMOTE_NODE_IP) return { id: 6, labels: reserved("remote-node") };
    if (ip === APISERVER_IP) return { id: 7, labels: reserved("kube-apiserver", "remote-node") };
    let best: Prefix | undefined;
    for (const q of referenced) {
      if (containsAddr(q, ip) && (best === undefined || q.bits > best.bits)) best = q;
    }
    if (best === undefined) return { id: 2, labels: reserved("world") };
    const labels = LabelSet.from([
      { source: "reserved", key: "world", value: "" },
      { source: "cidr", key: prefixString(best), value: "" },
    ]);
    return { id: (1 << 24) + best.bits, labels, prefix: best };
  };
  const endpoints = w.endpoints.map((e, i) => ({
    name: epName(i),
    namespace: nsName(w, e.ns),
    labels: workloadLabels({
      namespace: nsName(w, e.ns),
      labels: epLabels(e),
      namespaceLabels: nsLabels(w, e.ns),
      cluster: config.cluster,
    }),
    identity: ids[i] ?? 256 + i,
    ips: [epIp(i)],
  }));
  return { config, endpoints, outsideIdentity };
}

export function refSide(world: RefWorld, s: SideSpec): RefSide {
  if (s.kind === "host") return { identity: 1, labels: reserved("host") };
  if (s.kind === "ip") {
    const o = world.outsideIdentity(s.ip);
    return o.prefix
      ? { identity: o.id, labels: o.labels, prefix: o.prefix }
      : { identity: o.id, labels: o.labels };
  }
  const ep = world.endpoints[s.i % world.endpoints.length];
  if (!ep) throw new Error("reference: world without endpoints");
  return { identity: ep.identity, labels: ep.labels, endpoint: ep.name };
}

export function refQuery(world: RefWorld, q: QuerySpec): RefQuery {
  const icmp = q.proto === 1 || q.proto === 58;
  return {
    src: refSide(world, q.src),
    dst: refSide(world, q.dst),
    proto: q.proto,
    port: icmp ? q.icmpType : q.l4port,
  };
}

function peerRef(w: WorldSpec, s: SideSpec): PeerRef {
  if (s.kind === "host") return { kind: "host" };
  if (s.kind === "ip") return { kind: "ip", ip: s.ip };
  const i = s.i % w.endpoints.length;
  return { kind: "endpoint", name: epName(i), namespace: nsName(w, (w.endpoints[i] as { ns: number }).ns) };
}

const PROTO_NAME = { 6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6" } as const;

export function flowQuery(w: WorldSpec, q: QuerySpec): FlowQuery {
  const base = { from: peerRef(w, q.src), to: peerRef(w, q.dst), proto: PROTO_NAME[q.proto] };
  return q.proto === 1 || q.proto === 58 ? { ...base, icmpType: q.icmpType } : { ...base, port: q.l4port };
}

/** Queries worth asking: some side has policy (an endpoint or the host), and not the host to itself. */
export function interesting(q: QuerySpec): boolean {
  if (q.src.kind === "host" && q.dst.kind === "host") return false;
  return q.src.kind !== "ip" || q.dst.kind !== "ip";
}

/** One line per side for failure messages. */
export function describeQuery(w: WorldSpec, q: QuerySpec): string {
  const side = (s: SideSpec): string =>
    s.kind === "ep"
      ? `${nsName(w, (w.endpoints[s.i % w.endpoints.length] as { ns: number }).ns)}/${epName(s.i % w.endpoints.length)}`
      : s.kind === "host"
        ? "host"
        : s.ip;
  const icmp = q.proto === 1 || q.proto === 58;
  return `${side(q.src)} -> ${side(q.dst)} ${PROTO_NAME[q.proto]}/${icmp ? "type " + q.icmpType : q.l4port}`;
}
