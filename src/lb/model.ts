/**
 * The services' desired LB state, kept per service and recomputed only where something
 * changed: a Service, one of its EndpointSlices, or a pod its selector picks. Pure.
 *
 *   setService / setSlice / setPod --indexes--> dirty services
 *   flush() --serviceDesired (dirty ones only)--> {service -> its frontends} (empty: gone)
 *                                                 for LbTable.update (datapath/lb-table.ts)
 *
 * Indexes: pods by (namespace, label=value); selector services by (namespace, one pair of
 * their selector: a pod they select carries it); slices by the service they name. A pod change
 * marks the services that select it before or after; a slice change marks its service.
 */
import type { LbBackend, LbFrontend } from "../datapath/lb-types.js";
import { activePortBackends, selects, serviceDesired, type LbPod } from "./desired.js";
import type { LbService, LbSlice, ServiceView } from "./types.js";

const pair = (ns: string, k: string, v: string): string => `${ns}\u0000${k}=${v}`;

function addTo(index: Map<string, Set<string>>, k: string, v: string): void {
  const s = index.get(k);
  if (s) s.add(v);
  else index.set(k, new Set([v]));
}

function removeFrom(index: Map<string, Set<string>>, k: string, v: string): void {
  const s = index.get(k);
  if (!s) return;
  s.delete(v);
  if (s.size === 0) index.delete(k);
}

/** The selector pair a selector service is indexed under (the first key in order). */
function indexPair(s: LbService): string | undefined {
  const keys = Object.keys(s.selector ?? {}).sort();
  const k = keys[0];
  return k === undefined
    ? undefined
    : pair(s.namespace, k, (s.selector as Record<string, string>)[k] as string);
}

export class LbModel {
  private readonly services = new Map<string, LbService>();
  private readonly slices = new Map<string, LbSlice>();
  /** namespace/service -> keys of its slices. */
  private readonly slicesOf = new Map<string, Set<string>>();
  private readonly pods = new Map<string, LbPod>();
  /** (namespace, label=value) -> pod keys. */
  private readonly podIndex = new Map<string, Set<string>>();
  /** (namespace, label=value) -> selector services indexed under it. */
  private readonly svcIndex = new Map<string, Set<string>>();
  private readonly dirty = new Set<string>();
  private readonly views = new Map<string, ServiceView>();

  /** `isLocal`: the backends on this node (traffic policy Local; desired.ts inCidrs). */
  constructor(private readonly isLocal: (ip: string) => boolean = () => false) {}

  get size(): number {
    return this.services.size;
  }

  get pending(): boolean {
    return this.dirty.size > 0;
  }

  /** A Service (key "namespace/name") set or, when undefined, gone. */
  setService(key: string, s: LbService | undefined): void {
    const old = this.services.get(key);
    const oldPair = old && indexPair(old);
    if (oldPair) removeFrom(this.svcIndex, oldPair, key);
    if (s) {
      this.services.set(key, s);
      const p = indexPair(s);
      if (p) addTo(this.svcIndex, p, key);
    } else this.services.delete(key);
    if (old || s) this.dirty.add(key);
  }

  /** An EndpointSlice (key "namespace/name") set or, when undefined, gone. */
  setSlice(key: string, sl: LbSlice | undefined): void {
    const old = this.slices.get(key);
    if (old) {
      const svc = `${old.namespace}/${old.service}`;
      removeFrom(this.slicesOf, svc, key);
      this.dirty.add(svc);
    }
    if (sl) {
      this.slices.set(key, sl);
      const svc = `${sl.namespace}/${sl.service}`;
      addTo(this.slicesOf, svc, key);
      this.dirty.add(svc);
    } else this.slices.delete(key);
  }

  /** A pod (any stable key) set or, when undefined, gone. */
  setPod(key: string, pod: LbPod | undefined): void {
    const old = this.pods.get(key);
    if (old === pod) return;
    if (old) {
      this.markSelecting(old);
      for (const [k, v] of Object.entries(old.labels))
        removeFrom(this.podIndex, pair(old.namespace, k, v), key);
    }
    if (pod) {
      this.pods.set(key, pod);
      for (const [k, v] of Object.entries(pod.labels)) addTo(this.podIndex, pair(pod.namespace, k, v), key);
      this.markSelecting(pod);
    } else this.pods.delete(key);
  }

  /** Forgets every pod (the services that selected one are recomputed). */
  clearPods(): void {
    for (const key of [...this.pods.keys()]) this.setPod(key, undefined);
  }

  private markSelecting(pod: LbPod): void {
    for (const [k, v] of Object.entries(pod.labels)) {
      for (const svc of this.svcIndex.get(pair(pod.namespace, k, v)) ?? []) {
        const s = this.services.get(svc);
        if (s?.selector && selects(s.selector, pod.labels)) this.dirty.add(svc);
      }
    }
  }

  /** The pods a selector service's rarest selector pair finds (serviceDesired filters the rest). */
  private candidatePods(s: LbService): LbPod[] {
    let best: Set<string> | undefined;
    for (const [k, v] of Object.entries(s.selector ?? {})) {
      const set = this.podIndex.get(pair(s.namespace, k, v));
      if (!set) return [];
      if (!best || set.size < best.size) best = set;
    }
    return [...(best ?? [])].map((k) => this.pods.get(k) as LbPod);
  }

  /** Recomputes the services changed since the last flush: service key -> its frontends ([]: none or gone). */
  flush(): Map<string, LbFrontend[]> {
    const out = new Map<string, LbFrontend[]>();
    for (const key of this.dirty) {
      const s = this.services.get(key);
      if (!s) {
        this.views.delete(key);
        out.set(key, []);
        continue;
      }
      const slices = s.selector
        ? []
        : [...(this.slicesOf.get(key) ?? [])].map((k) => this.slices.get(k) as LbSlice);
      const d = serviceDesired(s, s.selector ? this.candidatePods(s) : [], slices, this.isLocal);
      this.views.set(key, d.view);
      out.set(key, d.frontends);
    }
    this.dirty.clear();
    return out;
  }

  /** Per Service port, its active endpoints and the port each serves it on (desired.ts activePortBackends). */
  portBackends(key: string): Map<number, LbBackend[]> | undefined {
    const s = this.services.get(key);
    if (!s) return undefined;
    const slices = s.selector
      ? []
      : [...(this.slicesOf.get(key) ?? [])].map((k) => this.slices.get(k) as LbSlice);
    return activePortBackends(s, s.selector ? this.candidatePods(s) : [], slices);
  }

  /** One service's view as of the last flush. */
  view(key: string): ServiceView | undefined {
    return this.views.get(key);
  }

  list(): ServiceView[] {
    return [...this.views.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([, v]) => v);
  }
}
