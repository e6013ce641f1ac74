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
 */
import { LB_PROTO, type LbBackend, type LbFrontend, type LbState } from "../datapath/lb-types.js";
import { parseAddr } from "../labels/cidr.js";
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
      for (const ip of pod.ips) if (parseAddr(ip)?.family === 4) add({ ip, port, state: "active" });
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

const rank = (s: BackendState): number => ({ active: 0, terminating: 1, "not-ready": 2 })[s];

export function desiredLb(
  services: readonly LbService[],
  pods: readonly LbPod[],
  slices: readonly LbSlice[],
): LbDesired {
  const frontends: LbFrontend[] = [];
  const views: ServiceView[] = [];
  for (const s of [...services].sort((a, b) =>
    `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`),
  )) {
    const one = serviceDesired(s, pods, slices);
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
): { frontends: LbFrontend[]; view: ServiceView } {
  const frontends: LbFrontend[] = [];
  const podList = [...pods];
  const sliceList = [...slices];
  const seen = new Map<string, Candidate>();
  for (const p of s.ports) {
    const all = candidates(s, p, podList, sliceList);
    for (const c of all) seen.set(`${c.ip}:${c.port}`, c);
    if (s.clusterIP === undefined || s.clusterIP === "None") continue;
    const ready = all.filter((c) => c.state === "active");
    const usable = (ready.length > 0 ? ready : all.filter((c) => c.state === "terminating")).map(
      ({ ip, port }) => ({ ip, port }),
    );
    const proto = LB_PROTO[p.protocol];
    const common = {
      proto,
      backends: usable,
      ...(s.affinitySeconds !== undefined ? { affinitySeconds: s.affinitySeconds } : {}),
    };
    // lb-l7: the addresses' TCP connections go to the proxy (per-request balancing); a NodePort stays in the kernel.
    const l7 = s.lbL7 === true && p.protocol === "TCP" ? { l7: true } : {};
    const fronts: LbFrontend[] = [{ ip: s.clusterIP, port: p.port, ...common, ...l7 }];
    if (p.nodePort !== undefined) fronts.push({ port: p.nodePort, ...common });
    if (s.loadBalancerIP !== undefined) fronts.push({ ip: s.loadBalancerIP, port: p.port, ...common, ...l7 });
    const slots = s.algorithm === "maglev" && usable.length > 0 ? maglevTable(usable.map((b) => `${b.ip}:${b.port}`)) : undefined; // prettier-ignore
    for (const f of fronts) frontends.push(slots ? { ...f, slots } : f);
  }
  const view: ServiceView = {
    namespace: s.namespace,
    name: s.name,
    type: s.type,
    clusterIP: s.clusterIP ?? "",
    ...(s.type === "LoadBalancer" ? { externalIP: s.loadBalancerIP ?? "<pending>" } : {}),
    ports: s.ports.map((p) => `${p.port}${p.nodePort !== undefined ? `:${p.nodePort}` : ""}/${p.protocol}`),
    affinity: s.affinitySeconds !== undefined ? `ClientIP (${s.affinitySeconds}s)` : "None",
    backends: [...seen.values()].map((c) => ({ address: `${c.ip}:${c.port}`, state: c.state })),
  };
  return { frontends, view };
}
