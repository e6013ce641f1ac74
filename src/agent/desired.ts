/**
 * Desired kernel state from the policy engine.
 *
 *   PolicyEngine (ipcache, per-endpoint MapState) + local endpoints (veth, addresses)
 *        --DesiredBuilder.build / buildDatapathState-->  DatapathState  --Reconciler--> nftables
 *   (segments per computed policy: desired-segments.ts)
 *
 * Fail closed: a segment whose L7 rules the node's proxy cannot enforce
 * (no proxy running, two parsers claiming the port, an L7 parser on a
 * protocol the proxy does not take) and a segment that needs mutual
 * authentication (not in the datapath yet) are compiled as drops, never as
 * a plain allow (an L7 rule must never turn into "everything on this port").
 * DNS rules go to the DNS proxy (UDP and TCP); HTTP, Kafka and TLS rules to
 * the TCP L7 proxy.
 */
import { prefixString } from "../labels/cidr.js";
import { ID } from "../identity/reserved.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../datapath/types.js";
import type { EndpointPolicy, PolicyEngine } from "../policy/engine.js";
import type { DirectionPolicy } from "../policy/resolve.js";
import type { RuleOrigin } from "../policy/types.js";
import {
  directionOf,
  optionsKey,
  ruleText,
  sameSegments,
  segmentsOf,
  withAuthSelf,
  type BuildOptions,
  type CachedDirection,
} from "./desired-segments.js";
import { RuleIds } from "./rule-ids.js";
import { HOST_USER, HostDirections, hostFirewall } from "./desired-host.js";

export { ruleText, type BuildOptions } from "./desired-segments.js";

export interface LocalEndpoint {
  readonly namespace: string;
  readonly name: string;
  readonly id: number;
  readonly hostIfname: string;
  readonly ipv4?: string;
  readonly ipv6?: string;
}

/** What the builder keeps of an endpoint between builds. */
interface BuiltEndpoint {
  readonly local: LocalEndpoint;
  readonly pol: EndpointPolicy;
  readonly dirs: readonly [CachedDirection, CachedDirection];
  /** The endpoint's fields besides its segments, as text (equal text: same DatapathEndpoint). */
  readonly key: string;
  readonly ingress: PolicySegment[];
  readonly egress: PolicySegment[];
  readonly ep: DatapathEndpoint;
}

/** The last build, which the next one starts from. */
interface LastBuild {
  readonly engine: PolicyEngine;
  readonly optsKey: string;
  readonly endpointRevision: number;
  readonly prefixRevision: number;
  /** The endpoint list it was built from (the same array again: nothing in it changed). */
  readonly list: readonly LocalEndpoint[];
  readonly state: DatapathState;
  /** Rule element key -> origin, of every direction in use; and their ids. */
  readonly origins: ReadonlyMap<string, RuleOrigin>;
  readonly ids: ReadonlyMap<string, number>;
}

/**
 * Builds DatapathStates, remembering what it built: an endpoint whose computed
 * policy, addresses and options did not change gets the very same
 * DatapathEndpoint object as last time, so that the compiler and the planner
 * skip it by identity (the datapath recompiles only what changed).
 *
 * A build costs what changed since the last one: only the endpoints the
 * engine journaled (endpointChangesSince: record or computed policy changed)
 * or whose wiring changed are looked at again; rule ids are reassigned only
 * when the set of computed policies in use changed. When nothing but host
 * addresses changed (they go as the engine's live HostTable), the last
 * state's arrays are handed back as they were.
 */
export class DesiredBuilder {
  private readonly ruleIds = new RuleIds();
  /** The host firewall's directions (desired-host.ts); in `users` as HOST_USER. */
  private readonly host = new HostDirections();
  private readonly dirs = new WeakMap<DirectionPolicy, CachedDirection>();
  private readonly built = new Map<number, BuiltEndpoint>();
  /** namespace/name -> endpoint id, of the endpoints built (the engine journals names). */
  private readonly idByName = new Map<string, number>();
  /** Endpoint ids using each cached direction (the directions in use name the rules). */
  private readonly users = new Map<CachedDirection, Set<number>>();
  private last: LastBuild | undefined;
  /** Endpoints looked at again (their computed policy fetched), over all builds: for tests. */
  private visited = 0;

  get endpointsVisited(): number {
    return this.visited;
  }

  build(
    engine: PolicyEngine,
    /** The node's endpoints; the same array as last time means the same contents (never changed in place). */
    endpoints: readonly LocalEndpoint[],
    opts: BuildOptions = { authAvailable: false },
    /** Filled with rule id -> the rule element it stands for (what flows name). */
    originsOut?: Map<number, RuleOrigin>,
  ): DatapathState {
    try {
      return this.buildFrom(engine, endpoints, opts, originsOut);
    } catch (e) {
      // Start over next time (endpoint objects are still reused where equal).
      this.last = undefined;
      throw e;
    }
  }

  private buildFrom(
    engine: PolicyEngine,
    endpoints: readonly LocalEndpoint[],
    opts: BuildOptions,
    originsOut: Map<number, RuleOrigin> | undefined,
  ): DatapathState {
    engine.regenerate();
    const optsKey = optionsKey(opts);
    const endpointRevision = engine.stats.endpointRevision;
    const prefixRevision = engine.ipcache.prefixRevision;
    const last = this.last?.engine === engine && this.last.optsKey === optsKey ? this.last : undefined;
    const changed = last ? engine.endpointChangesSince(last.endpointRevision) : undefined;
    const hostBefore = this.host.cached();
    const hd = this.host.update(engine);
    // Which endpoints to look at again: every one on a first build, else what changed.
    const todo = new Map<number, LocalEndpoint>();
    let known = 0;
    // The very list of the last build (EndpointsController.local() until a record changes): no walk.
    const sameList = changed !== undefined && endpoints === last?.list;
    for (const ep of sameList ? [] : endpoints) {
      const b = this.built.get(ep.id);
      if (b) known++;
      if (!changed || !b || !sameLocal(b.local, ep)) todo.set(ep.id, ep);
    }
    const gone = sameList || known === this.built.size ? [] : this.goneIds(endpoints);
    // The engine's changes, by name (few): endpoints of the list built before, unchanged in it.
    for (const key of changed ?? []) {
      const id = this.idByName.get(key);
      const b = id === undefined ? undefined : this.built.get(id);
      if (id !== undefined && b && !todo.has(id) && !gone.includes(id)) todo.set(id, b.local);
    }
    const quiet = todo.size === 0 && gone.length === 0 && !hd.changed;
    if (last && changed && quiet && prefixRevision === last.prefixRevision) {
      fillOrigins(originsOut, last.origins, last.ids);
      this.last = { ...last, endpointRevision, list: endpoints };
      // The live proxy workers' ports are not in the options' key: always the current ones.
      return opts.proxy ? { ...last.state, proxy: opts.proxy } : { ...last.state };
    }
    // Computed first, changed after: a failure (an endpoint the engine does not know) changes nothing.
    const fresh = [...todo.values()].map((ep) => {
      const pol = engine.endpointPolicy(ep.namespace, ep.name);
      return { ep, pol, dirs: [this.cached(pol.ingress), this.cached(pol.egress)] as const };
    });
    this.visited += fresh.length;
    let dirsChanged = !changed;
    if (!changed) this.users.clear();
    const use = (c: CachedDirection, id: number, on: boolean): void => {
      let u = this.users.get(c);
      if (on && !u) this.users.set(c, (u = new Set()));
      if (on) u?.add(id);
      else u?.delete(id);
      if (!u || (on ? u.size === 1 : u.size === 0)) dirsChanged = true;
      if (u?.size === 0) this.users.delete(c);
    };
    if (!changed || hd.changed) {
      if (changed) for (const c of hostBefore) use(c, HOST_USER, false);
      for (const d of hd.dirs) use(d.c, HOST_USER, true);
    }
    for (const f of fresh) {
      const b = this.built.get(f.ep.id);
      if (b && changed && b.dirs[0] === f.dirs[0] && b.dirs[1] === f.dirs[1]) continue;
      if (b && changed) for (const c of b.dirs) use(c, f.ep.id, false);
      for (const c of f.dirs) use(c, f.ep.id, true);
    }
    for (const id of gone) {
      const b = this.built.get(id);
      for (const c of b?.dirs ?? []) use(c, id, false);
      if (b && this.idByName.get(`${b.local.namespace}/${b.local.name}`) === id)
        this.idByName.delete(`${b.local.namespace}/${b.local.name}`);
      this.built.delete(id);
    }
    // Every rule element a direction in use derives from gets an id (flows name all of them).
    let { origins, ids } = last ?? { origins: new Map<string, RuleOrigin>(), ids: new Map<string, number>() };
    let rules = last?.state.rules ?? [];
    const redo = new Map<number, { ep: LocalEndpoint; pol: EndpointPolicy; dirs: BuiltEndpoint["dirs"] }>();
    for (const f of fresh) redo.set(f.ep.id, f);
    if (dirsChanged || !last) {
      const all = new Map<string, RuleOrigin>();
      for (const c of this.users.keys()) for (const [k, o] of c.origins) if (!all.has(k)) all.set(k, o);
      origins = all;
      ids = this.ruleIds.assign(new Set(all.keys()));
      rules = [...all].map(([key, o]) => ({ id: ids.get(key) ?? 0, text: ruleText(o) }));
      rules.sort((a, b) => a.id - b.id);
      // A rule whose id moved changes the segments of every endpoint using it.
      for (const [c, u] of this.users) {
        const before = c.built?.segments;
        if (segmentsOf(c, ids, opts, optsKey) === before) continue;
        for (const id of u) {
          const b = this.built.get(id);
          if (!redo.has(id) && b) redo.set(id, { ep: b.local, pol: b.pol, dirs: b.dirs });
        }
      }
    }
    fillOrigins(originsOut, origins, ids);
    let renewed = gone.length > 0;
    for (const { ep, pol, dirs } of redo.values()) {
      const before = this.built.get(ep.id)?.ep;
      if (this.endpointOf(ep, pol, dirs, ids, opts, optsKey) !== before) renewed = true;
    }
    const eps =
      last && !renewed && endpoints.length === last.state.endpoints.length
        ? last.state.endpoints
        : // Frozen: the datapath skips a list it applied last only when it cannot have changed in place.
          (Object.freeze(
            endpoints.map((ep) => (this.built.get(ep.id) as BuiltEndpoint).ep).sort((a, b) => a.id - b.id),
          ) as DatapathEndpoint[]);
    const ipcache =
      last && prefixRevision === last.prefixRevision ? last.state.ipcache : prefixEntries(engine);
    const host = hostFirewall(hd.dirs, ids, opts, opts.tunnelPort);
    const state: DatapathState = {
      ipcache,
      hosts: engine.ipcache.hosts,
      endpoints: eps,
      rules,
      hostIdentity: ID.host,
      ...(opts.proxy ? { proxy: opts.proxy } : {}),
      ...(host ? { host } : {}),
      ...(opts.authAvailable ? { auth: true } : {}),
    };
    this.last = { engine, optsKey, endpointRevision, prefixRevision, state, origins, ids, list: endpoints };
    return state;
  }

  /** Ids built before that `endpoints` no longer holds. */
  private goneIds(endpoints: readonly LocalEndpoint[]): number[] {
    const now = new Set(endpoints.map((e) => e.id));
    return [...this.built.keys()].filter((id) => !now.has(id));
  }

  private cached(pol: DirectionPolicy): CachedDirection {
    let c = this.dirs.get(pol);
    if (!c) this.dirs.set(pol, (c = directionOf(pol)));
    return c;
  }

  /** The endpoint's DatapathEndpoint: the last one when nothing in it changed. */
  private endpointOf(
    ep: LocalEndpoint,
    pol: EndpointPolicy,
    [ci, ce]: BuiltEndpoint["dirs"],
    ids: ReadonlyMap<string, number>,
    opts: BuildOptions,
    optsKey: string,
  ): DatapathEndpoint {
    const self = pol.endpoint.identity.id;
    const ingress = withAuthSelf(segmentsOf(ci, ids, opts, optsKey), self);
    const egress = withAuthSelf(segmentsOf(ce, ids, opts, optsKey), self);
    const key = [
      ep.namespace,
      ep.name,
      ep.hostIfname,
      ep.ipv4 ?? "",
      ep.ipv6 ?? "",
      pol.endpoint.identity.id,
      pol.ingress.enforced,
      pol.ingress.auditDefault ?? false,
      pol.egress.enforced,
      pol.egress.auditDefault ?? false,
    ].join("|");
    const prev = this.built.get(ep.id);
    if (prev?.local !== ep) this.idByName.set(`${ep.namespace}/${ep.name}`, ep.id);
    // A recomputed policy that came out the same (e.g. a re-applied file) is no change either.
    if (
      prev &&
      prev.key === key &&
      sameSegments(prev.ingress, ingress) &&
      sameSegments(prev.egress, egress)
    ) {
      this.built.set(ep.id, { ...prev, local: ep, pol, dirs: [ci, ce], ingress, egress });
      return prev.ep;
    }
    const out: DatapathEndpoint = {
      id: ep.id,
      name: `${ep.namespace}/${ep.name}`,
      hostIfname: ep.hostIfname,
      ...(ep.ipv4 !== undefined ? { ipv4: ep.ipv4 } : {}),
      ...(ep.ipv6 !== undefined ? { ipv6: ep.ipv6 } : {}),
      identity: pol.endpoint.identity.id,
      ingress: {
        enforced: pol.ingress.enforced,
        ...(pol.ingress.auditDefault ? { auditDefault: true } : {}),
        segments: ingress,
      },
      egress: {
        enforced: pol.egress.enforced,
        ...(pol.egress.auditDefault ? { auditDefault: true } : {}),
        segments: egress,
      },
    };
    this.built.set(ep.id, { local: ep, pol, dirs: [ci, ce], key, ingress, egress, ep: out });
    return out;
  }
}

function sameLocal(a: LocalEndpoint, b: LocalEndpoint): boolean {
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    a.hostIfname === b.hostIfname &&
    a.ipv4 === b.ipv4 &&
    a.ipv6 === b.ipv6
  );
}

function fillOrigins(
  out: Map<number, RuleOrigin> | undefined,
  origins: ReadonlyMap<string, RuleOrigin>,
  ids: ReadonlyMap<string, number>,
): void {
  if (!out) return;
  out.clear();
  for (const [key, o] of origins) out.set(ids.get(key) ?? 0, o);
}

/** The prefix entries of the ipcache (exact addresses go as the engine's host table, with its journal). */
function prefixEntries(engine: PolicyEngine): DatapathState["ipcache"] {
  const ipcache = [...engine.ipcache.prefixEntries()].map((e) => ({
    prefix: prefixString(e.prefix),
    identity: e.identity,
  }));
  // Dual stack: outside addresses are world-ipv4 / world-ipv6 (as the engine
  // decides), not plain world, which the kernel falls back to.
  if (engine.config.dualStack) {
    ipcache.push({ prefix: "0.0.0.0/0", identity: ID.worldIPv4 }, { prefix: "::/0", identity: ID.worldIPv6 });
  }
  ipcache.sort((a, b) => (a.prefix < b.prefix ? -1 : a.prefix > b.prefix ? 1 : 0));
  return ipcache;
}

/** A one-off build (tests, `what if` questions): no cache carried over. */
export function buildDatapathState(
  engine: PolicyEngine,
  endpoints: readonly LocalEndpoint[],
  opts: BuildOptions = { authAvailable: false },
  originsOut?: Map<number, RuleOrigin>,
): DatapathState {
  return new DesiredBuilder().build(engine, endpoints, opts, originsOut);
}
