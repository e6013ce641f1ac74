/**
 * HTTPRoute rules -> CompiledRules (one per match), and their order: the
 * spec's precedence among every rule of every route on a hostname.
 *
 *   1. Exact path, then RegularExpression (longer pattern first), then
 *      PathPrefix (longer prefix first)
 *   2. a method match
 *   3. more header matches
 *   4. more query parameter matches
 *   5. the older route (creationTimestamp), then namespace/name alphabetically
 *   6. rule order, then match order within the route
 */
import { RE2JS } from "re2js";
import type { BackendObjectRef, HTTPRoute, RouteMatch, RouteRule } from "./model.js";
import type { BackendTarget, CompiledMatch, CompiledRule } from "./table.js";

interface Ordered extends CompiledRule {
  readonly created: string;
  readonly matchIndex: number;
}

export function compileRule(
  route: HTTPRoute,
  rule: RouteRule,
  ruleIndex: number,
  resolve: (b: BackendObjectRef, weight: number) => BackendTarget,
): CompiledRule[] {
  const backends = rule.backendRefs.map((b) => {
    const t = resolve(b, b.weight);
    return b.filters ? { ...t, filters: b.filters } : t;
  });
  const mirrors = rule.filters
    .flatMap((f) =>
      f.type === "RequestMirror"
        ? [{ ...resolve(f.backendRef, 1), ...(f.fraction !== undefined ? { fraction: f.fraction } : {}) }]
        : [],
    )
    .filter((t) => !t.invalid);
  return rule.matches.map((m, matchIndex): Ordered => ({
    route: `${route.meta.namespace}/${route.meta.name}`,
    ruleIndex,
    matchIndex,
    created: route.meta.creationTimestamp ?? "",
    match: compileMatch(m),
    filters: rule.filters,
    backends,
    mirrors,
    ...(rule.timeouts ? { timeouts: rule.timeouts } : {}),
  }));
}

export function compileMatch(m: RouteMatch): CompiledMatch {
  const full = (re: string): RE2JS => RE2JS.compile(re);
  const path = m.path.type === "PathPrefix" ? m.path.value.replace(/\/+$/, "") : m.path.value;
  return {
    pathType: m.path.type,
    path,
    ...(m.path.type === "RegularExpression" ? { pathRegex: full(m.path.value) } : {}),
    ...(m.method !== undefined ? { method: m.method } : {}),
    headers: m.headers.map((h) => ({
      name: h.name,
      key: h.name.toLowerCase(),
      ...(h.type === "Exact" ? { exact: h.value } : { regex: full(h.value) }),
    })),
    queryParams: m.queryParams.map((q) => ({
      name: q.name,
      key: q.name,
      ...(q.type === "Exact" ? { exact: q.value } : { regex: full(q.value) }),
    })),
  };
}

const PATH_RANK = { Exact: 0, RegularExpression: 1, PathPrefix: 2 } as const;

function compare(a: Ordered, b: Ordered): number {
  const am = a.match;
  const bm = b.match;
  return (
    PATH_RANK[am.pathType] - PATH_RANK[bm.pathType] ||
    (am.pathType === "Exact" ? 0 : bm.path.length - am.path.length) ||
    Number(bm.method !== undefined) - Number(am.method !== undefined) ||
    bm.headers.length - am.headers.length ||
    bm.queryParams.length - am.queryParams.length ||
    olderFirst(a.created, b.created) ||
    (a.route < b.route ? -1 : a.route > b.route ? 1 : 0) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex
  );
}

function olderFirst(a: string, b: string): number {
  if (a === b) return 0;
  if (a === "") return 1;
  if (b === "") return -1;
  return a < b ? -1 : 1;
}

export function sortRules(rules: readonly CompiledRule[]): CompiledRule[] {
  return [...(rules as readonly Ordered[])].sort(compare);
}
