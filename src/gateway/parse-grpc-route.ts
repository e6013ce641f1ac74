/**
 * GRPCRoute spec (gateway.networking.k8s.io/v1) -> GRPCRoute value, with the
 * spec's defaults and limits: a method match is Exact unless said, an Exact
 * one names a service or a method (or both) in gRPC's own characters, a
 * RegularExpression one is RE2; filters are the three GRPCRoute allows
 * (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror); a rule
 * without matches matches every call.
 */
import { Fields, join } from "./fields.js";
import type {
  GRPCMethodMatch,
  GRPCRoute,
  GRPCRouteMatch,
  GRPCRouteRule,
  Meta,
  RouteFilter,
} from "./model.js";
import { backendRef, filter, parentRef, regex, routeHostnames, stringMatch } from "./parse-route.js";

/** Exact service: a fully qualified protobuf service name; exact method: a protobuf identifier. */
const SERVICE = /^(?:[A-Za-z_][A-Za-z_0-9]*\.)*[A-Za-z_][A-Za-z_0-9]*$/;
const METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;
const GRPC_FILTERS = ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror"];

export function parseGrpcRoute(meta: Meta, spec: Record<string, unknown>, f: Fields): GRPCRoute {
  f.known(spec, "spec", ["parentRefs", "hostnames", "rules"]);
  const parentRefs = f
    .arr(spec["parentRefs"], "spec.parentRefs")
    .map((v, i) => parentRef(v, `spec.parentRefs[${i}]`, f));
  const hostnames = routeHostnames(spec, f);
  const rawRules = f.arr(spec["rules"], "spec.rules");
  const rules = (rawRules.length === 0 ? [{}] : rawRules).map((v, i) => rule(v, `spec.rules[${i}]`, f));
  return { kind: "GRPCRoute", meta, parentRefs, hostnames, rules };
}

function rule(v: unknown, p: string, f: Fields): GRPCRouteRule {
  const o = f.obj(v, p) ?? {};
  f.known(o, p, ["name", "matches", "filters", "backendRefs", "sessionPersistence"]);
  const rawMatches = f.arr(o["matches"], join(p, "matches"));
  const matches = (rawMatches.length === 0 ? [{}] : rawMatches).map((m, i) =>
    match(m, `${p}.matches[${i}]`, f),
  );
  const filters: RouteFilter[] = [];
  f.arr(o["filters"], join(p, "filters")).forEach((x, i) => {
    const q = `${p}.filters[${i}]`;
    const t = f.obj(x, q)?.["type"];
    if (typeof t === "string" && !GRPC_FILTERS.includes(t))
      return void f.fail(
        join(q, "type"),
        `must be one of ${GRPC_FILTERS.join(", ")} on a GRPCRoute, not "${t}"`,
      );
    const parsed = filter(x, q, f);
    if (parsed) filters.push(parsed);
  });
  for (const t of ["RequestHeaderModifier", "ResponseHeaderModifier"])
    if (filters.filter((x) => x.type === t).length > 1)
      f.fail(join(p, "filters"), `${t} may appear only once`);
  const backendRefs = f
    .arr(o["backendRefs"], join(p, "backendRefs"))
    .map((x, i) => backendRef(x, `${p}.backendRefs[${i}]`, f));
  return { matches, filters, backendRefs };
}

function match(v: unknown, p: string, f: Fields): GRPCRouteMatch {
  const o = f.obj(v, p) ?? {};
  f.known(o, p, ["method", "headers"]);
  const headers = f
    .arr(o["headers"], join(p, "headers"))
    .map((h, i) => stringMatch(h, `${p}.headers[${i}]`, f, true));
  const method = methodMatch(o["method"], join(p, "method"), f);
  return { headers, ...(method !== undefined ? { method } : {}) };
}

function methodMatch(v: unknown, p: string, f: Fields): GRPCMethodMatch | undefined {
  const o = f.obj(v, p);
  if (!o) return undefined;
  f.known(o, p, ["type", "service", "method"]);
  const type =
    f.oneOf(o["type"], join(p, "type"), ["Exact", "RegularExpression"] as const, "Exact") ?? "Exact";
  const service = f.str(o["service"], join(p, "service"));
  const method = f.str(o["method"], join(p, "method"));
  if (type === "Exact") {
    if (service === undefined && method === undefined)
      f.fail(p, "an Exact method match names a service, a method, or both");
    if (service !== undefined && !SERVICE.test(service))
      f.fail(join(p, "service"), `${JSON.stringify(service)} is not a gRPC service name (package.Service)`);
    if (method !== undefined && !METHOD.test(method))
      f.fail(join(p, "method"), `${JSON.stringify(method)} is not a gRPC method name`);
  } else {
    if (service !== undefined) regex(service, join(p, "service"), f);
    if (method !== undefined) regex(method, join(p, "method"), f);
  }
  return {
    type,
    ...(service !== undefined && service !== "" ? { service } : {}),
    ...(method !== undefined && method !== "" ? { method } : {}),
  };
}
