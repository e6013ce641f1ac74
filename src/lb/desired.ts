/**
 * Services + their backends -> the node's desired LB state (datapath/lb-types.ts)
 * and what `membrane get services` shows. Pure.
 *
 *   LbService (selector)    + pods it selects (local and other nodes')  --+
 *   LbService (no selector) + EndpointSlices kubernetes.io/service-name --+--> LbState + ServiceView[]
 *
 * A backend takes new connections when ready. Terminating ones (EndpointSlice
 * conditions) take none while a ready one exists; when none is ready, the serving
 * terminating ones do (kube-proxy's fallback, KEP-1669); with neither, the service
 * refuses new connections at once.
 *
 * Traffic policy Local (externalTrafficPolicy for the NodePorts and the LoadBalancer address,
 * internalTrafficPolicy for the ClusterIP): only the backends `isLocal` says run on this node
 * (the same ready/terminating choice among them); with none there but some elsewhere, the frontend
 * drops new connections (kube-proxy's "has no local endpoints"); with none anywhere it refuses them. The client's address is kept:
 * the NodePort masquerade (datapath/lb-compile.ts) applies to backends outside the node only.
 */
import { LB_PROTO, type LbBackend, type LbFrontend, type LbState } from "../datapath/lb-types.js";
import { canonicalAddr } from "../datapath/lb-compile.js";
import { containsAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { maglevTable } from "./maglev.js";
import type { BackendState, LbService, LbSlice, ServicePortSpec, ServiceView } from "./types.js";

export interface LbPod {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly ips: readonly string[];
  readonly namedPorts?: readonly {
    readonly name: string;
    readonly port: number;
    readonly protocol: string;
  }[];
}

export interface LbDesired {
  state: LbState;
  views: ServiceView[];
}

interface Candidate extends LbBackend {
  state: BackendState;
}

/** A test of "this backend runs on this node": its address is in one of the node's pod CIDRs. */
export function inCidrs(cidrs: readonly string[]): (ip: string) => boolean {
  const ps = cidrs.map((c) => parsePrefix(c)).filter((p): p is Prefix => p !== undefined);
  return (ip) => ps.some((p) => containsAddr(p, ip));
}

export function selects(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(selector);
  return keys.length > 0 && keys.every((k) => labels[k] === selector[k]);
}

function candidates(
  s: LbService,
  p: ServicePortSpec,
  pods: readonly LbPod[],
  slices: readonly LbSlice[],
): Candidate[] {
  const out = new Map<string, Candidate>();
  const add = (c: Candidate): void => {
    const k = `${c.ip}:${c.port}`;
    const was = out.get(k);
    if (!was || rank(c.state) < rank(was.state)) out.set(k, c);
  };
  if (s.selector) {
    for (const pod of pods) {
      if (pod.namespace !== s.namespace || !selects(s.selector, pod.labels)) continue;
      const port =
        typeof p.targetPort === "number"
          ? p.targetPort
          : pod.namedPorts?.find((n) => n.name === p.targetPort && n.protocol === p.protocol)?.port;
      if (port === undefined) continue; // the pod has no port of that name: not a backend
      for (const raw of pod.ips) {
        const ip = canonicalAddr(raw);
        if (ip !== undefined) add({ ip, port, state: "active" });
      }
    }
  } else {
    for (const sl of slices) {
      if (sl.namespace !== s.namespace || sl.service !== s.name) continue;
      const sp = sl.ports.find((q) => q.name === (p.name ?? "") && q.protocol === p.protocol);
      if (!sp) continue;
      for (const e of sl.endpoints) {
        const state: BackendState =
          e.ready && !e.terminating ? "active" : e.serving && e.terminating ? "terminating" : "not-ready";
        for (const ip of e.addresses) add({ ip, port: sp.port, state });
      }
    }
  }
  return [...out.values()].sort((a, b) => (a.ip === b.ip ? a.port - b.port : a.ip < b.ip ? -1 : 1));
}

/**
 * Per Service port, the endpoints that take new connections and the port each serves it on
 * (a named targetPort as the pod names it, a selectorless Service's EndpointSlice port):
 * what the gateway dials, as kube-proxy does. Of the service's families only, as its frontends.
 */
export function activePortBackends(
  s: LbService,
  pods: Iterable<LbPod>,
  slices: Iterable<LbSlice>,
): Map<number, LbBackend[]> {
  const podList = [...pods];
  const sliceList = [...slices];
  const cips = s.clusterIP === undefined || s.clusterIP === "None" ? [] : (s.clusterIPs ?? [s.clusterIP]);
  const v6s = new Set(cips.map((ip) => ip.includes(":")));
  const out = new Map<number, LbBackend[]>();
  for (const p of s.ports)
    out.set(
      p.port,
      candidates(s, p, podList, sliceList)
        .filter((c) => c.state === "active" && (cips.length === 0 || v6s.has(c.ip.includes(":"))))
        .map(({ ip, port }) => ({ ip, port })),
    );
  return out;
}

const rank = (s: BackendState): number => ({ active: 0, terminating: 1, "not-ready": 2 })[s];

export function desiredLb(
  services: readonly LbService[],
  pods: readonly LbPod[],
  slices: readonly LbSlice[],
  isLocal?: (ip: string) => boolean,
): LbDesired {
  const frontends: LbFrontend[] = [];
  const views: ServiceView[] = [];
  for (const s of [...services].sort((a, b) =>
    `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
  )) {
    const one = serviceDesired(s, pods, slices, isLocal);
    frontends.push(...one.frontends);
    views.push(one.view);
  }
  return { state: { frontends }, views };
}

/**
 * One service's frontends and view. `pods` and `slices` may hold more than the service's own
 * (they are filtered here); lb/model.ts passes only the candidates its indexes found.
 */
export function serviceDesired(
  s: LbService,
  pods: Iterable<LbPod>,
  slices: Iterable<LbSlice>,
  isLocal: (ip: string) => boolean = () => false,
): { frontends: LbFrontend[]; view: ServiceView } {
  const frontends: LbFrontend[] = [];
  const podList = [...pods];
  const sliceList = [...slices];
  const seen = new Map<string, Candidate>();
  const cips = s.clusterIP === undefined || s.clusterIP === "None" ? [] : (s.clusterIPs ?? [s.clusterIP]);
  // A service's backends are of its families only (headless: as given); an IPv4 service ignores pods' IPv6.
  const v6s = new Set(cips.map((ip) => ip.includes(":")));
  for (const p of s.ports) {
    const every = candidates(s, p, podList, sliceList).filter((c) => cips.length === 0 || v6s.has(c.ip.includes(":"))); // prettier-ignore
    for (const c of every) seen.set(hostPort(c), c);
    // One set of frontends per family the service has (dual-stack: two), each with its family's backends.
    for (const cip of cips) frontends.push(...familyFrontends(s, p, cip, every, isLocal));
  }
  const view: ServiceView = {
    namespace: s.namespace,
    name: s.name,
    type: s.type,
    clusterIP: s.clusterIP ?? "",
    ...(s.clusterIPs ? { clusterIPs: s.clusterIPs } : {}),
    ...(s.type === "LoadBalancer" ? { externalIP: lbAddresses(s).join(",") || "<pending>" } : {}),
    ports: s.ports.map((p) => `${p.port}${p.nodePort !== undefined ? `:${p.nodePort}` : ""}/${p.protocol}`),
    affinity: s.affinitySeconds !== undefined ? `ClientIP (${s.affinitySeconds}s)` : "None",
    ...(s.externalLocal === true ? { externalTrafficPolicy: "Local" as const } : {}),
    ...(s.internalLocal === true ? { internalTrafficPolicy: "Local" as const } : {}),
    ...(s.healthCheckNodePort !== undefined
      ? {
          healthCheckNodePort: s.healthCheckNodePort,
          localEndpoints: localReady(seen.values(), cips[0], isLocal),
        }
      : {}),
    backends: [...seen.values()].map((c) => ({ address: hostPort(c), state: c.state })),
  };
  return { frontends, view };
}

/** A LoadBalancer's addresses (dual-stack: both, primary first). */
export const lbAddresses = (s: LbService): readonly string[] =>
  s.loadBalancerIPs ?? (s.loadBalancerIP !== undefined ? [s.loadBalancerIP] : []);

/**
 * What the health check node port reports (kube-proxy's localEndpoints): this node's ready
 * backends, distinct addresses of the service's primary family (a dual-stack pod counts once).
 */
function localReady(
  cs: Iterable<Candidate>,
  primary: string | undefined,
  isLocal: (ip: string) => boolean,
): number {
  const v6 = primary?.includes(":") ?? false;
  const ips = new Set<string>();
  for (const c of cs) if (c.state === "active" && c.ip.includes(":") === v6 && isLocal(c.ip)) ips.add(c.ip);
  return ips.size;
}

/** "10.0.0.1:80", "[fd00::1]:80". */
const hostPort = (b: LbBackend): string => (b.ip.includes(":") ? `[${b.ip}]:${b.port}` : `${b.ip}:${b.port}`);

/** A port's frontends in the family of `cip`: its ClusterIP, NodePort and LoadBalancer address. */
function familyFrontends(
  s: LbService,
  p: ServicePortSpec,
  cip: string,
  every: Candidate[],
  isLocal: (ip: string) => boolean,
): LbFrontend[] {
  const v6 = cip.includes(":");
  const all = every.filter((c) => c.ip.includes(":") === v6);
  const frontends: LbFrontend[] = [];
  const proto = LB_PROTO[p.protocol];
  /** The frontend's common part from the candidates it may use (Local: the node's own). */
  const pick = (from: Candidate[]): LbBackend[] => {
    const ready = from.filter((c) => c.state === "active");
    return (ready.length > 0 ? ready : from.filter((c) => c.state === "terminating")).map(({ ip, port }) => ({
      ip,
      port,
    }));
  };
  const anywhere = pick(all).length > 0;
  const common = (local: boolean): Omit<LbFrontend, "port"> => {
    const usable = pick(local ? all.filter((c) => isLocal(c.ip)) : all);
    const slots = s.algorithm === "maglev" && usable.length > 0 ? maglevTable(usable.map((b) => `${b.ip}:${b.port}`)) : undefined; // prettier-ignore
    return {
      proto,
      backends: usable,
      ...(s.affinitySeconds !== undefined ? { affinitySeconds: s.affinitySeconds } : {}),
      ...(slots ? { slots } : {}),
      // No backend here but some elsewhere: drop; none anywhere: refused at once (kube-proxy's two cases).
      ...(local && usable.length === 0 && anywhere ? { noLocal: true } : {}),
    };
  };
  // lb-l7 (either family): the addresses' TCP connections go to the proxy (per-request balancing); a NodePort stays in the kernel.
  const l7 = s.lbL7 === true && p.protocol === "TCP" ? { l7: true } : {};
  const cluster = common(false);
  const internal = s.internalLocal === true ? common(true) : cluster;
  const external = s.externalLocal === true ? common(true) : cluster;
  frontends.push({ ip: cip, port: p.port, ...internal, ...l7 });
  if (p.nodePort !== undefined) frontends.push({ port: p.nodePort, ...(v6 ? { family: 6 as const } : {}), ...external }); // prettier-ignore
  for (const ip of lbAddresses(s))
    if (ip.includes(":") === v6) frontends.push({ ip, port: p.port, ...external, ...l7, external: true });
  return frontends;
}
