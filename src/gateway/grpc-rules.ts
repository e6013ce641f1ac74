/**
 * GRPCRoute rules -> CompiledRules the matcher already knows (a gRPC call is
 * `POST /package.Service/Method`), one per match, and their order.
 *
 *   method match                     path match
 *   Exact service + method      ->   Exact /service/method
 *   Exact service               ->   PathPrefix /service      (every method)
 *   Exact method                ->   RegularExpression /[^/]+/method
 *   RegularExpression s, m      ->   RegularExpression /(?:s)/(?:m)  (absent part: [^/]+)
 *   none                        ->   PathPrefix /             (every call)
 *
 * Precedence among the GRPCRoute rules of a hostname (the spec's): the
 * longer matching service, then the longer method, then more header
 * matches, then the older route (creationTimestamp), then namespace/name,
 * then rule and match order.
 */
import type { BackendObjectRef, GRPCMethodMatch, GRPCRoute, GRPCRouteMatch } from "./model.js";
import { compileMatch } from "./rules.js";
import type { BackendTarget, CompiledRule } from "./table.js";

interface OrderedGrpc extends CompiledRule {
  readonly created: string;
  readonly matchIndex: number;
  readonly grpc: { readonly service: number; readonly method: number };
}

export function compileGrpcRules(
  route: GRPCRoute,
  resolve: (b: BackendObjectRef, weight: number) => BackendTarget,
): CompiledRule[] {
  return route.rules.flatMap((rule, ruleIndex) => {
    const backends = rule.backendRefs.map((b) => resolve(b, b.weight));
    const mirrors = rule.filters
      .flatMap((f) => (f.type === "RequestMirror" ? [resolve(f.backendRef, 1)] : []))
      .filter((t) => !t.invalid);
    return rule.matches.map((m, matchIndex): OrderedGrpc => ({
      route: `${route.meta.namespace}/${route.meta.name}`,
      ruleIndex,
      matchIndex,
      created: route.meta.creationTimestamp ?? "",
      match: compileMatch(asHttpMatch(m)),
      filters: rule.filters,
      backends,
      mirrors,
      grpc: { service: m.method?.service?.length ?? 0, method: m.method?.method?.length ?? 0 },
    }));
  });
}

function asHttpMatch(m: GRPCRouteMatch): Parameters<typeof compileMatch>[0] {
  return { path: pathOf(m.method), headers: m.headers, queryParams: [] };
}

function pathOf(mm: GRPCMethodMatch | undefined): {
  type: "Exact" | "PathPrefix" | "RegularExpression";
  value: string;
} {
  if (!mm || (mm.service === undefined && mm.method === undefined)) return { type: "PathPrefix", value: "/" };
  if (mm.type === "RegularExpression")
    return {
      type: "RegularExpression",
      value: `/(?:${mm.service ?? "[^/]+"})/(?:${mm.method ?? "[^/]+"})`,
    };
  // Exact names are checked to be identifiers (parse-grpc-route.ts): no regex metacharacter but ".".
  if (mm.service !== undefined && mm.method !== undefined)
    return { type: "Exact", value: `/${mm.service}/${mm.method}` };
  if (mm.service !== undefined) return { type: "PathPrefix", value: `/${mm.service}` };
  return { type: "RegularExpression", value: `/[^/]+/${mm.method ?? ""}` };
}

function olderFirst(a: string, b: string): number {
  if (a === b) return 0;
  if (a === "") return 1;
  if (b === "") return -1;
  return a < b ? -1 : 1;
}

function compare(a: OrderedGrpc, b: OrderedGrpc): number {
  return (
    b.grpc.service - a.grpc.service ||
    b.grpc.method - a.grpc.method ||
    b.match.headers.length - a.match.headers.length ||
    olderFirst(a.created, b.created) ||
    (a.route < b.route ? -1 : a.route > b.route ? 1 : 0) ||
    a.ruleIndex - b.ruleIndex ||
    a.matchIndex - b.matchIndex
  );
}

export function sortGrpcRules(rules: readonly CompiledRule[]): CompiledRule[] {
  return [...(rules as readonly OrderedGrpc[])].sort(compare);
}
