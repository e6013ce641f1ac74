/**
 * Incremental planning: the transaction for what changed since the last
 * apply, in time that follows the change, not the node.
 *
 *   Applied (what the kernel accepted last: global part, each endpoint's part, a copy of the hosts)
 *     + next DatapathState
 *       ├─ global scope: prefix ipcache maps and base chains (small), diffed whole
 *       ├─ hosts scope: only the addresses HostTableView.changesSince(applied revision) names
 *       ├─ endpoint changes: only endpoints whose DatapathEndpoint object is new (DesiredBuilder
 *       │  hands back the same object when nothing changed), and the endpoints that went;
 *       │  their group keys move them between policy groups (policy-groups.ts)
 *       ├─ group scopes (made): each group name a move touched (or whose rule texts changed),
 *       │  diffed against what that name held: a group whose members all moved the same way
 *       │  keeps its name and changes by element delta, once, however many members it has
 *       ├─ endpoint scopes: the changed endpoints, and the members of a renamed group,
 *       │  each diffed against its own last part (its chains and dispatch elements)
 *       └─ group scopes (broken): names no group holds any more, after the chains that went to them
 *     => one nft script (scopes in that order), committed into Applied only once the kernel took it;
 *        when it creates, rewrites or removes no chain or map (an address, a port, a peer
 *        identity changed), `elementOps` too: the same change as element deltas for
 *        nfnl/setelem.ts, which does not pay nft's per-table cost; when it leaves the
 *        global part alone (endpoints created, changed or deleted), `objects`: the same
 *        change as one nf_tables batch of chains, maps, rules and elements (nfnl/objects.ts)
 *
 * Each scope goes through plan() (same ordering rules: make before break), with
 * the scope's objects only, so an unchanged endpoint costs one identity check.
 * A change plan() cannot do in place (a map's declaration changed) returns
 * undefined: the caller plans the whole table against the kernel instead.
 */
import { globalPart, hostElement, hostMaps, type CompileOptions, type TableDigest } from "./compile.js";
import type { EndpointContext, EndpointParts } from "./compile-endpoint.js";
import { membersOf, type Members } from "./group-table.js";
import { endpointChanges } from "./incremental-groups.js";
import { DISPATCH_MAPS } from "./dispatch.js";
import type { GroupPart } from "./policy-groups.js";
import { mapSignature, type CompiledTable, type NftMap } from "./model.js";
import { asActual, lazyPlan, plan, type Plan } from "./plan.js";
import type { HostTableView } from "../ipcache/hosts.js";
import type { ElementOps } from "./nfnl/setelem.js";
import { encodeElement } from "./nfnl/encode.js";
import { objectMessages } from "./nfnl/objects.js";
import type { NfMsg } from "../abi/nft-object-wire.js";
import type { WireElement } from "../abi/nft-setelem-wire.js";
import { add64, globalDigest, hostDigest, stampMap, sub64 } from "./stamp.js";
import type { DatapathEndpoint, DatapathState } from "./types.js";

export interface Applied {
  /** Maps (dispatch and host maps without elements) and base chains. */
  global: CompiledTable;
  parts: Map<number, { ep: DatapathEndpoint; part: EndpointParts }>;
  /** Policy groups by name, and their members by group key. */
  groups: Map<string, GroupPart>;
  members: Map<string, Members>;
  hosts: { view: HostTableView | undefined; revision: number; copy: Map<string, number> };
  ctxKey: string;
  /** What the global part was compiled from (globalKeyOf): the same key, the same part. */
  globalKey: string;
  /** stamp.ts: the digest the stamp map holds, and its terms. */
  digest: TableDigest;
  /** The endpoint list and rules applied (a frozen list that is the same object holds the same endpoints). */
  lists: { endpoints: readonly DatapathEndpoint[]; rules: DatapathState["rules"] };
}

/**
 * True when `state` holds the very endpoints last applied, under the same rule
 * texts: the same list object, frozen (so it cannot have changed in place;
 * the agent's DesiredBuilder hands back its frozen list when no endpoint
 * changed), and rules equal by content (a changed rule text changes the
 * comments of the endpoints using it). Then no endpoint needs looking at.
 */
function sameEndpoints(applied: Applied, state: DatapathState): boolean {
  const a = applied.lists;
  if (state.endpoints !== a.endpoints || !Object.isFrozen(state.endpoints)) return false;
  return sameRules(a.rules, state.rules);
}

/** Rule lists equal by content (a changed text changes the comments of the groups using it). */
function sameRules(a: DatapathState["rules"], b: DatapathState["rules"]): boolean {
  return a === b || (a.length === b.length && b.every((r, i) => r.id === a[i]?.id && r.text === a[i]?.text));
}

/** What every compiled endpoint part depends on besides its endpoint (a part compiled under another is stale). */
export const ctxKeyOf = (state: DatapathState, opts: CompileOptions): string =>
  `${opts.logGroup ?? 1}|${state.proxy ? "proxy" : "-"}`;

/**
 * Everything the global part depends on, as text: when it is the key of the last
 * apply, the global part is that one (not compiled, diffed or hashed again). By
 * content, not by reference, so that an array changed in place is not missed.
 */
export const globalKeyOf = (state: DatapathState, opts: CompileOptions): string =>
  JSON.stringify([
    opts.table ?? "membrane",
    String(state.hostIdentity),
    state.proxy ?? null,
    state.ipcache.map((e) => [e.prefix, String(e.identity)]),
    // The host firewall is part of the global part (compile-host.ts): small, and it changes rarely.
    state.host ?? null,
    state.auth === true, // the gate of mutual authentication (compile-auth.ts)
    state.services === true, // the policy chains of service connections (compile-lb-policy.ts)
  ]);

/** Applied for a table compiled whole (the first apply, or after a read-back). */
export function appliedFromFull(
  state: DatapathState,
  parts: Map<number, EndpointParts>,
  groups: Map<string, GroupPart>,
  opts: CompileOptions,
  digest: TableDigest,
): Applied {
  const byId = new Map(state.endpoints.map((ep) => [ep.id, ep]));
  const out: Applied["parts"] = new Map();
  for (const [id, part] of parts) {
    const ep = byId.get(id);
    if (ep) out.set(id, { ep, part });
  }
  return {
    digest,
    global: globalPart(state, opts),
    parts: out,
    groups,
    members: membersOf(parts),
    hosts: {
      view: state.hosts,
      revision: state.hosts?.revision ?? 0,
      copy: new Map(state.hosts ? state.hosts.entries() : []),
    },
    ctxKey: ctxKeyOf(state, opts),
    globalKey: globalKeyOf(state, opts),
    lists: { endpoints: state.endpoints, rules: state.rules },
  };
}

/**
 * The part the last apply compiled for this very endpoint object, if any (for
 * compileAll's `cached`, which checks that its groups kept their names). Rule texts
 * are in the groups' comments, not in endpoint parts.
 */
export function cachedPart(
  applied: Applied | undefined,
  ep: DatapathEndpoint,
  _ctx: EndpointContext,
  ctxKey: string,
): EndpointParts | undefined {
  const prev = applied?.parts.get(ep.id);
  if (!prev || prev.ep !== ep || applied?.ctxKey !== ctxKey) return undefined;
  return prev.part;
}

function dispatchMaps(global: CompiledTable, part: EndpointParts | undefined): NftMap[] {
  return DISPATCH_MAPS.map((d) => {
    const m = global.maps.find((x) => x.name === d.name) as NftMap;
    const e = part?.dispatch[d.part];
    return { ...m, elements: e ? [e] : [] };
  });
}

function scope(global: CompiledTable, part: EndpointParts | undefined): CompiledTable {
  return {
    family: global.family,
    name: global.name,
    maps: dispatchMaps(global, part),
    chains: [...(part?.chains ?? [])],
  };
}

function groupScope(global: CompiledTable, g: GroupPart | undefined): CompiledTable {
  return { family: global.family, name: global.name, maps: g?.maps ?? [], chains: g?.chains ?? [] };
}

/**
 * The transaction from `applied` to `state`, and the commit that makes
 * `applied` describe the kernel once it took the transaction; undefined when
 * only a whole-table plan can do it.
 */
export function planIncremental(
  applied: Applied,
  state: DatapathState,
  opts: CompileOptions,
):
  | {
      plan: Plan;
      elementOps?: ElementOps[];
      objects?: NfMsg[];
      /** Endpoints looked at (0 when the list is the one applied last: sameEndpoints). */
      endpointsChecked: number;
      commit: () => void;
    }
  | undefined {
  const ctxKey = ctxKeyOf(state, opts);
  if (ctxKey !== applied.ctxKey) return undefined;
  // The global part (prefix ipcache, base chains): only when what it is made of changed.
  const globalKey = globalKeyOf(state, opts);
  const plans: Plan[] = [];
  /** The global part's plan when it changes something (then nft writes the whole change). */
  let globalPlan: Plan | undefined;
  let global = applied.global;
  let globalD = applied.digest.global;
  if (globalKey !== applied.globalKey) {
    global = globalPart(state, opts);
    const prevSig = new Map(applied.global.maps.map((m) => [m.name, mapSignature(m)]));
    if (global.maps.some((m) => prevSig.get(m.name) !== mapSignature(m))) return undefined;
    const p = plan(global, asActual(applied.global));
    plans.push(p);
    if (p.ops > 0) {
      globalD = globalDigest(global);
      globalPlan = p;
    }
  }
  let hostsD = applied.digest.hosts;
  let hostPlan: Plan | undefined;

  // Hosts: the journal's addresses only.
  const view = state.hosts;
  let hostChanges: Map<string, number | undefined> | undefined;
  if (view !== applied.hosts.view || view?.revision !== applied.hosts.revision) {
    hostChanges = view && view === applied.hosts.view ? view.changesSince(applied.hosts.revision) : undefined;
    if (!hostChanges) {
      // Another table, or the journal no longer reaches back: compare the copies whole.
      hostChanges = new Map();
      for (const [ip, id] of view ? view.entries() : [])
        if (applied.hosts.copy.get(ip) !== id) hostChanges.set(ip, id);
      for (const ip of applied.hosts.copy.keys())
        if (view?.get(ip) === undefined) hostChanges.set(ip, undefined);
    }
    // The two host maps (declarations only), filled with the changed addresses' new and old elements.
    const want = hostMaps(undefined);
    const have = hostMaps(undefined);
    for (const [ip, id] of hostChanges) {
      const old = applied.hosts.copy.get(ip);
      if (old === id) continue;
      if (old !== undefined) hostsD = sub64(hostsD, hostDigest(ip, old));
      if (id !== undefined) hostsD = add64(hostsD, hostDigest(ip, id));
      if (id !== undefined) {
        const h = hostElement(ip, id);
        want[h.family === 4 ? 0 : 1]?.elements.push(h.element);
      }
      if (old !== undefined) {
        const h = hostElement(ip, old);
        have[h.family === 4 ? 0 : 1]?.elements.push(h.element);
      }
    }
    const T = { family: global.family, name: global.name, chains: [] };
    hostPlan = plan({ ...T, maps: want }, asActual({ ...T, maps: have }));
    plans.push(hostPlan);
  }

  // Endpoints: those that changed, appeared or went, and the policy groups they move between.
  const group = opts.logGroup ?? 1;
  const texts = new Map(state.rules.map((r) => [r.id, r.text]));
  const ctx: EndpointContext = {
    group,
    ruleText: (id) => texts.get(id),
    ...(state.proxy ? { proxy: state.proxy } : {}),
  };
  // The list applied last (checked then, frozen since): nothing to look at, however many.
  const skip = sameEndpoints(applied, state);
  const ch = endpointChanges(applied, state, ctx, ctxKey, skip, !sameRules(applied.lists.rules, state.rules));
  /** Each scope's (want, had), for nfnl/objects.ts, in the batch's order. */
  const scopes: { want: CompiledTable; had: CompiledTable }[] = [
    ...ch.made.map((g) => ({ want: groupScope(global, g.want), had: groupScope(applied.global, g.had) })),
    ...ch.endpoints.map((e) => ({ want: scope(global, e.want), had: scope(applied.global, e.had) })),
    ...ch.broken.map((g) => ({
      want: groupScope(global, undefined),
      had: groupScope(applied.global, g.had),
    })),
  ];
  for (const sc of scopes) plans.push(plan(sc.want, asActual(sc.had)));
  const partsD = ch.partsD;
  // The stamp follows: subtract what went, add what came.
  let total = sub64(add64(applied.digest.total, globalD), applied.digest.global);
  total = add64(sub64(total, applied.digest.hosts), hostsD);
  for (const [id, d] of partsD) {
    const old = applied.digest.parts.get(id);
    if (old !== undefined) total = sub64(total, old);
    if (d !== undefined) total = add64(total, d);
  }
  for (const [name, d] of ch.groupsD) {
    const old = applied.digest.groups.get(name);
    if (old !== undefined) total = sub64(total, old);
    if (d !== undefined) total = add64(total, d);
  }
  const T2 = { family: global.family, name: global.name, chains: [] };
  const stampPlan = plan(
    { ...T2, maps: [stampMap(total)] },
    asActual({ ...T2, maps: [stampMap(applied.digest.total)] }),
  );
  plans.push(stampPlan);
  const merged: Plan = lazyPlan({
    script: () => plans.map((p) => p.script).join(""),
    ops: plans.reduce((n, p) => n + p.ops, 0),
    lines: () => plans.flatMap((p) => p.lines),
  });
  const elementOps = plans.every((p) => p.objects === 0) ? encodeAll(plans) : undefined;
  // Endpoint objects without nft: only when the global part is untouched (its chains are base chains).
  const objects =
    !elementOps && merged.ops > 0 && globalPlan === undefined
      ? objectMessages(global.name, hostPlan?.elements ?? [], scopes, stampPlan.elements ?? [])
      : undefined;
  return {
    plan: merged,
    ...(elementOps ? { elementOps } : {}),
    ...(objects ? { objects } : {}),
    endpointsChecked: skip ? 0 : state.endpoints.length,
    commit: () => {
      applied.lists = { endpoints: state.endpoints, rules: state.rules };
      applied.global = global;
      applied.globalKey = globalKey;
      for (const [id, p] of ch.nextParts) applied.parts.set(id, p);
      for (const id of ch.gone) applied.parts.delete(id);
      for (const g of ch.made) applied.groups.set(g.name, g.want);
      for (const g of ch.broken) applied.groups.delete(g.name);
      for (const [key, m] of ch.members) {
        if (m.ids.size === 0) applied.members.delete(key);
        else applied.members.set(key, m);
      }
      if (hostChanges) {
        for (const [ip, id] of hostChanges) {
          if (id === undefined) applied.hosts.copy.delete(ip);
          else applied.hosts.copy.set(ip, id);
        }
      }
      applied.hosts.view = view;
      applied.hosts.revision = view?.revision ?? 0;
      applied.digest.total = total;
      applied.digest.global = globalD;
      applied.digest.hosts = hostsD;
      for (const [id, d] of partsD) {
        if (d === undefined) applied.digest.parts.delete(id);
        else applied.digest.parts.set(id, d);
      }
      for (const [name, d] of ch.groupsD) {
        if (d === undefined) applied.digest.groups.delete(name);
        else applied.digest.groups.set(name, d);
      }
    },
  };
}

/** Every element change of `plans`, encoded for nfnl/; undefined when one cannot be. */
function encodeAll(plans: readonly Plan[]): ElementOps[] | undefined {
  const bySet = new Map<string, { set: string; add: WireElement[]; del: WireElement[] }>();
  for (const p of plans) {
    for (const d of p.elements ?? []) {
      let o = bySet.get(d.map.name);
      if (!o) bySet.set(d.map.name, (o = { set: d.map.name, add: [], del: [] }));
      for (const e of d.del) {
        const j = encodeElement(d.map, e, true);
        if (!j) return undefined;
        o.del.push(j);
      }
      for (const e of d.add) {
        const j = encodeElement(d.map, e, false);
        if (!j) return undefined;
        o.add.push(j);
      }
    }
  }
  return [...bySet.values()];
}
