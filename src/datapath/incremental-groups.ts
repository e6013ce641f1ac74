/**
 * The endpoint side of an incremental change (incremental.ts): which endpoints
 * changed, how that moves them between policy groups (policy-groups.ts), and
 * the scopes to diff, in the order the batch needs them.
 *
 *   changed endpoints + gone ones
 *     -> their group keys: leave the old key's members, join the new key's (copies of
 *        the applied member sets: nothing is committed before the kernel took the batch)
 *     -> each touched key: its name now (g<smallest member>), and the name it had
 *     -> each touched name: the group it holds now against the group it held
 *        (same key, same texts: nothing; else compiled anew under that name)
 *     -> endpoint parts: the changed endpoints, and the members of keys whose name changed
 *   scopes: made (groups that exist after), endpoints, broken (names no group holds after)
 *
 * Pure: no I/O. Every check an endpoint needs is made on the changed ones only.
 */
import { checkEndpoint, EndpointUniqueness } from "./compile.js";
import { compileEndpoint, type EndpointContext, type EndpointParts } from "./compile-endpoint.js";
import { DIRS, sameRefs, whereOf, type Members } from "./group-table.js";
import type { Applied } from "./incremental.js";
import {
  compileGroup,
  groupKey,
  groupName,
  policyOf,
  textsStale,
  type GroupPart,
  type GroupRef,
} from "./policy-groups.js";
import { groupDigest, partDigest } from "./stamp.js";
import type { DatapathEndpoint, DatapathState } from "./types.js";

export interface EndpointChanges {
  /** Group scopes that exist after the change (created or changed), before the endpoints. */
  made: { name: string; want: GroupPart; had: GroupPart | undefined }[];
  /** Endpoint scopes (want undefined: the endpoint went). */
  endpoints: { id: number; want: EndpointParts | undefined; had: EndpointParts | undefined }[];
  /** Group names no group holds after the change, after the endpoints. */
  broken: { name: string; had: GroupPart }[];
  /** Endpoint parts to commit (ep and part), ids to drop. */
  nextParts: [number, { ep: DatapathEndpoint; part: EndpointParts }][];
  gone: number[];
  /** Member sets to commit by key (empty: delete the key). */
  members: Map<string, Members>;
  /** Digests of what changed: endpoints by id, groups by name (undefined: removed). */
  partsD: Map<number, bigint | undefined>;
  groupsD: Map<string, bigint | undefined>;
}

/** The endpoint changes from `applied` to `state`; `skip`: the endpoint list is the one applied. */
export function endpointChanges(
  applied: Applied,
  state: DatapathState,
  ctx: EndpointContext,
  ctxKey: string,
  skip: boolean,
  textsChanged: boolean,
): EndpointChanges {
  const out: EndpointChanges = {
    made: [],
    endpoints: [],
    broken: [],
    nextParts: [],
    gone: [],
    members: new Map(),
    partsD: new Map(),
    groupsD: new Map(),
  };
  // An unchanged endpoint (the same object) costs its identity check and two set insertions
  // (ids and interfaces used twice); a changed one is checked as compile() would.
  const unique = new EndpointUniqueness();
  const seen = new Set<number>();
  const changed: { ep: DatapathEndpoint; keys: Record<"in" | "out", string | undefined> }[] = [];
  (skip ? [] : state.endpoints).forEach((ep, i) => {
    unique.add(ep, `endpoints[${i}]`);
    seen.add(ep.id);
    const prev = applied.parts.get(ep.id);
    if (prev && prev.ep === ep && applied.ctxKey === ctxKey) return;
    // What checkEndpoint looks at (id, interface, addresses) is what sameOwn compares: the
    // same values as the applied endpoint's (checked then) need no second parse.
    if (!prev || !sameOwn(prev.ep, ep)) checkEndpoint(ep, `endpoints[${i}]`);
    changed.push({ ep, keys: { in: groupKey("in", ep.ingress), out: groupKey("out", ep.egress) } });
  });
  if (!skip) for (const id of applied.parts.keys()) if (!seen.has(id)) out.gone.push(id);

  // Member sets of the keys touched, copied on first touch.
  const touched = out.members;
  const membersOf = (key: string, dir: "in" | "out"): Members => {
    let m = touched.get(key);
    if (!m) {
      const a = applied.members.get(key);
      m = { name: a?.name ?? "", dir, ids: new Set(a?.ids) };
      touched.set(key, m);
    }
    return m;
  };
  /** The endpoint object of an id after the change (for the policy of a group and renamed members). */
  const nowEp = new Map<number, DatapathEndpoint>();
  for (const { ep, keys } of changed) {
    nowEp.set(ep.id, ep);
    const old = applied.parts.get(ep.id)?.part.groups;
    for (const dir of DIRS) {
      const was = old?.[dir]?.key;
      const now = keys[dir];
      if (was === now) continue;
      if (was !== undefined) membersOf(was, dir).ids.delete(ep.id);
      if (now !== undefined) membersOf(now, dir).ids.add(ep.id);
    }
  }
  for (const id of out.gone) {
    const old = applied.parts.get(id)?.part.groups;
    for (const dir of DIRS) {
      const was = old?.[dir]?.key;
      if (was !== undefined) membersOf(was, dir).ids.delete(id);
    }
  }
  const epOf = (id: number): DatapathEndpoint =>
    (nowEp.get(id) ?? applied.parts.get(id)?.ep) as DatapathEndpoint;

  // Names: each touched key's name now; the names they held.
  const refNow = new Map<string, GroupRef>(); // key -> ref, touched keys only
  const wantByName = new Map<string, { key: string; n: number; dir: "in" | "out" }>();
  const oldNames = new Set<string>();
  /** Members whose group was renamed (their chains name it). */
  const renamed = new Set<number>();
  for (const [key, m] of touched) {
    const had = applied.members.get(key)?.name;
    if (had !== undefined) oldNames.add(had);
    let n = Infinity;
    for (const id of m.ids) if (id < n) n = id;
    const name = m.ids.size === 0 ? "" : groupName(n, m.dir);
    touched.set(key, { name, dir: m.dir, ids: m.ids });
    if (name === "") continue;
    refNow.set(key, { name, key });
    wantByName.set(name, { key, n, dir: m.dir });
    if (had !== name) for (const id of m.ids) renamed.add(id);
  }
  const names = new Set([...oldNames, ...wantByName.keys()]);
  // Rule texts changed: every group whose comments used one is compiled again, in place.
  if (textsChanged)
    for (const [name, g] of applied.groups)
      if (!names.has(name) && textsStale(g, ctx.ruleText)) names.add(name);
  for (const name of [...names].sort()) {
    const had = applied.groups.get(name);
    // Not held by a touched key now: a name a touched key held (gone), or an untouched group's.
    const w = wantByName.get(name) ?? (oldNames.has(name) ? undefined : untouched(applied, name));
    if (!w) {
      if (had) {
        out.broken.push({ name, had });
        out.groupsD.set(name, undefined);
      }
      continue;
    }
    if (had && had.key === w.key && !textsStale(had, ctx.ruleText)) continue;
    const first = epOf(w.n);
    const want = compileGroup(w.n, w.dir, w.key, policyOf(first, w.dir), ctx, whereOf(w.n, w.dir));
    out.made.push({ name, want, had });
    out.groupsD.set(name, groupDigest(want));
  }

  // Endpoint parts: the changed ones, and the members of renamed groups.
  const keysOf = new Map(changed.map((c) => [c.ep.id, c.keys]));
  const refsOf = (id: number): EndpointParts["groups"] => {
    const prev = applied.parts.get(id)?.part.groups;
    const r: { in?: GroupRef; out?: GroupRef } = {};
    const keys = keysOf.get(id);
    for (const dir of DIRS) {
      const key = keys ? keys[dir] : prev?.[dir]?.key;
      if (key === undefined) continue;
      r[dir] = refNow.get(key) ?? prev?.[dir] ?? { name: applied.members.get(key)?.name ?? "", key };
    }
    return r;
  };
  const redo = new Set<number>([...changed.map((c) => c.ep.id), ...renamed]);
  for (const id of [...redo].sort((a, b) => a - b)) {
    const ep = epOf(id);
    const prev = applied.parts.get(id);
    const had = prev?.part;
    const refs = refsOf(id);
    if (had && prev && sameOwn(prev.ep, ep) && sameNames(had.groups, refs)) {
      // Its own chains would come out the same (a policy change moved its group, which
      // kept its name): no compile, no diff; the part records the groups' new keys.
      const part = sameRefs(had.groups, refs) ? had : { ...had, groups: refs };
      if (part !== had || prev.ep !== ep) out.nextParts.push([id, { ep, part }]);
      continue;
    }
    const want = compileEndpoint(ep, ctx, refs);
    out.endpoints.push({ id, want, had });
    out.nextParts.push([id, { ep, part: want }]);
    out.partsD.set(id, partDigest(id, want));
  }
  for (const id of out.gone) {
    out.endpoints.push({ id, want: undefined, had: applied.parts.get(id)?.part });
    out.partsD.set(id, undefined);
  }
  return out;
}

/** What an endpoint's own chains and dispatch elements are made of besides its groups. */
const sameOwn = (a: DatapathEndpoint, b: DatapathEndpoint): boolean =>
  a === b || (a.id === b.id && a.hostIfname === b.hostIfname && a.ipv4 === b.ipv4 && a.ipv6 === b.ipv6);

const sameNames = (a: EndpointParts["groups"], b: EndpointParts["groups"]): boolean =>
  a.in?.name === b.in?.name && a.out?.name === b.out?.name;

/** An untouched group still holding `name` (its texts changed), as a want. */
function untouched(
  applied: Applied,
  name: string,
): { key: string; n: number; dir: "in" | "out" } | undefined {
  const g = applied.groups.get(name);
  if (!g) return undefined;
  const m = applied.members.get(g.key);
  if (!m || m.name !== name) return undefined;
  let n = Infinity;
  for (const id of m.ids) if (id < n) n = id;
  return { key: g.key, n, dir: g.dir };
}
