/**
 * HTTPRoute spec -> HTTPRoute value (parentRefs, hostnames, rules with
 * matches, filters and weighted backendRefs), defaults as the spec sets them:
 * no match = PathPrefix `/`, a backendRef's weight 1, its kind Service,
 * a redirect's status 302. A backendRef may carry filters of its own:
 * header modifiers, RequestRedirect, URLRewrite (a GRPCRoute's: the header
 * modifiers alone), checked as a rule's are.
 */
import { RE2JS } from "re2js";
import { Fields, HEADER_NAME, hostnameProblem, join } from "./fields.js";
import { ruleTimeouts } from "./timeouts.js";
import {
  GATEWAY_GROUP,
  type BackendObjectRef,
  type BackendRef,
  type HeaderModifier,
  type HTTPRoute,
  type Meta,
  type ParentRef,
  type PathModifier,
  type RouteFilter,
  type RouteMatch,
  type RouteRule,
  type StringMatch,
} from "./model.js";

const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] as const;

export function parseHttpRoute(meta: Meta, spec: Record<string, unknown>, f: Fields): HTTPRoute {
  f.known(spec, "spec", ["parentRefs", "hostnames", "rules"]);
  const parentRefs = f
    .arr(spec["parentRefs"], "spec.parentRefs")
    .map((v, i) => parentRef(v, `spec.parentRefs[${i}]`, f));
  const hostnames = routeHostnames(spec, f);
  const rawRules = f.arr(spec["rules"], "spec.rules");
  const rules = (rawRules.length === 0 ? [{}] : rawRules).map((v, i) => rule(v, `spec.rules[${i}]`, f));
  return { kind: "HTTPRoute", meta, parentRefs, hostnames, rules };
}

/** `spec.hostnames` of a route (HTTPRoute, GRPCRoute). */
export function routeHostnames(spec: Record<string, unknown>, f: Fields): string[] {
  return f.arr(spec["hostnames"], "spec.hostnames").map((v, i) => {
    const h = f.str(v, `spec.hostnames[${i}]`, true) ?? "";
    const why = h === "" ? undefined : hostnameProblem(h);
    if (why) f.fail(`spec.hostnames[${i}]`, why);
    return h;
  });
}

export function parentRef(v: unknown, p: string, f: Fields): ParentRef {
  const o = f.obj(v, p);
  f.known(o, p, ["group", "kind", "name", "namespace", "sectionName", "port"]);
  const namespace = f.str(o?.["namespace"], join(p, "namespace"));
  const sectionName = f.str(o?.["sectionName"], join(p, "sectionName"));
  const port = f.int(o?.["port"], join(p, "port"), 1, 65535);
  return {
    group: f.str(o?.["group"], join(p, "group")) ?? GATEWAY_GROUP,
    kind: f.str(o?.["kind"], join(p, "kind")) ?? "Gateway",
    name: f.str(o?.["name"], join(p, "name"), true) ?? "",
    ...(namespace !== undefined ? { namespace } : {}),
    ...(sectionName !== undefined ? { sectionName } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

/** The filters an HTTPRoute backendRef may have (a GRPCRoute's: the header modifiers alone). */
const BACKEND_FILTERS = ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"];

/** One filter list (a rule's, a backendRef's) as the spec allows it; `at` names the list. */
function checkFilterSet(
  defined: readonly RouteFilter[],
  at: string,
  matches: readonly RouteMatch[],
  f: Fields,
): void {
  if (defined.some((x) => x.type === "RequestRedirect") && defined.some((x) => x.type === "URLRewrite"))
    f.fail(at, "RequestRedirect and URLRewrite cannot be used together");
  for (const t of ["RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite"])
    if (defined.filter((x) => x.type === t).length > 1) f.fail(at, `${t} may appear only once`);
  const prefixOnly = defined.some(
    (x) => (x.type === "URLRewrite" || x.type === "RequestRedirect") && x.path?.type === "ReplacePrefixMatch",
  );
  if (prefixOnly && matches.some((m) => m.path.type !== "PathPrefix"))
    f.fail(at, "ReplacePrefixMatch needs every match of the rule to be a PathPrefix match");
}

function rule(v: unknown, p: string, f: Fields): RouteRule {
  const o = f.obj(v, p) ?? {};
  f.known(o, p, ["name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence"]);
  const rawMatches = f.arr(o["matches"], join(p, "matches"));
  const matches = (rawMatches.length === 0 ? [{}] : rawMatches).map((m, i) =>
    match(m, `${p}.matches[${i}]`, f),
  );
  const filters = f.arr(o["filters"], join(p, "filters")).map((x, i) => filter(x, `${p}.filters[${i}]`, f));
  const backendRefs = f
    .arr(o["backendRefs"], join(p, "backendRefs"))
    .map((x, i) => backendRef(x, `${p}.backendRefs[${i}]`, f, BACKEND_FILTERS));
  const defined = filters.filter((x): x is RouteFilter => x !== undefined);
  const redirect = defined.some((x) => x.type === "RequestRedirect");
  if (redirect && backendRefs.length > 0)
    f.fail(join(p, "backendRefs"), "must be empty with a RequestRedirect filter");
  checkFilterSet(defined, join(p, "filters"), matches, f);
  backendRefs.forEach((b, i) =>
    checkFilterSet(b.filters ?? [], `${p}.backendRefs[${i}].filters`, matches, f),
  );
  if (o["retry"] !== undefined)
    f.fail(
      join(p, "retry"),
      "retries are not supported by this gateway (remove the field; a request is tried once)",
    );
  const timeouts = ruleTimeouts(o["timeouts"], join(p, "timeouts"), f);
  return { matches, filters: defined, backendRefs, ...(timeouts ? { timeouts } : {}) };
}

function match(v: unknown, p: string, f: Fields): RouteMatch {
  const o = f.obj(v, p) ?? {};
  f.known(o, p, ["path", "headers", "queryParams", "method"]);
  const po = f.obj(o["path"], join(p, "path"));
  f.known(po, join(p, "path"), ["type", "value"]);
  const type =
    f.oneOf(
      po?.["type"],
      join(p, "path.type"),
      ["Exact", "PathPrefix", "RegularExpression"] as const,
      "PathPrefix",
    ) ?? "PathPrefix";
  const value = f.str(po?.["value"], join(p, "path.value")) ?? "/";
  if (type === "RegularExpression") regex(value, join(p, "path.value"), f);
  else if (!value.startsWith("/")) f.fail(join(p, "path.value"), "must start with /");
  else if (/\/\/|%2f|%2F|#|\/\.\.?(\/|$)/.test(value))
    f.fail(join(p, "path.value"), "must not contain //, /./, /../, %2f or #");
  const headers = f
    .arr(o["headers"], join(p, "headers"))
    .map((h, i) => stringMatch(h, `${p}.headers[${i}]`, f, true));
  const queryParams = f
    .arr(o["queryParams"], join(p, "queryParams"))
    .map((h, i) => stringMatch(h, `${p}.queryParams[${i}]`, f, false));
  const method = o["method"] === undefined ? undefined : f.oneOf(o["method"], join(p, "method"), METHODS);
  return { path: { type, value }, headers, queryParams, ...(method !== undefined ? { method } : {}) };
}

export function stringMatch(v: unknown, p: string, f: Fields, header: boolean): StringMatch {
  const o = f.obj(v, p);
  f.known(o, p, ["type", "name", "value"]);
  const type =
    f.oneOf(o?.["type"], join(p, "type"), ["Exact", "RegularExpression"] as const, "Exact") ?? "Exact";
  const name = f.str(o?.["name"], join(p, "name"), true) ?? "";
  if (header && name !== "" && !HEADER_NAME.test(name))
    f.fail(join(p, "name"), `${JSON.stringify(name)} is not a header name`);
  const value = f.str(o?.["value"], join(p, "value"), true) ?? "";
  if (type === "RegularExpression") regex(value, join(p, "value"), f);
  return { type, name, value };
}

export function regex(value: string, p: string, f: Fields): void {
  try {
    RE2JS.compile(value);
  } catch (e) {
    f.fail(p, `is not an RE2 regular expression: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function headerModifier(v: unknown, p: string, f: Fields): HeaderModifier {
  const o = f.obj(v, p) ?? (f.fail(p, "is required for this filter type") as undefined) ?? {};
  f.known(o, p, ["set", "add", "remove"]);
  const pairs = (key: string): { name: string; value: string }[] =>
    f.arr(o[key], join(p, key)).map((x, i) => {
      const q = `${p}.${key}[${i}]`;
      const h = f.obj(x, q);
      f.known(h, q, ["name", "value"]);
      const name = f.str(h?.["name"], join(q, "name"), true) ?? "";
      if (name !== "" && !HEADER_NAME.test(name))
        f.fail(join(q, "name"), `${JSON.stringify(name)} is not a header name`);
      const value = f.str(h?.["value"], join(q, "value")) ?? "";
      if (/[\r\n\0]/.test(value)) f.fail(join(q, "value"), "must not contain CR, LF or NUL");
      return { name, value };
    });
  const remove = f
    .arr(o["remove"], join(p, "remove"))
    .map((x, i) => f.str(x, `${p}.remove[${i}]`, true) ?? "");
  return { set: pairs("set"), add: pairs("add"), remove };
}

function pathModifier(v: unknown, p: string, f: Fields): PathModifier | undefined {
  const o = f.obj(v, p);
  if (!o) return undefined;
  f.known(o, p, ["type", "replaceFullPath", "replacePrefixMatch"]);
  const type = f.oneOf(o["type"], join(p, "type"), ["ReplaceFullPath", "ReplacePrefixMatch"] as const);
  if (type === undefined) return undefined;
  const key = type === "ReplaceFullPath" ? "replaceFullPath" : "replacePrefixMatch";
  const value = f.str(o[key], join(p, key), true) ?? "/";
  if (!value.startsWith("/")) f.fail(join(p, key), "must start with /");
  // It goes into the request line to the backend and into a redirect's Location: nothing that ends
  // or splits either (request smuggling, header injection).
  else if (/[\x00-\x20\x7f#]/.test(value))
    f.fail(join(p, key), "must not contain spaces, control characters or #");
  return { type, value };
}

export function filter(v: unknown, p: string, f: Fields): RouteFilter | undefined {
  const o = f.obj(v, p);
  if (!o) return f.fail(p, "must be a mapping");
  const types = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
    "RequestMirror",
  ] as const;
  const type = f.oneOf(o["type"], join(p, "type"), types);
  f.known(o, p, [
    "type",
    "requestHeaderModifier",
    "responseHeaderModifier",
    "requestRedirect",
    "urlRewrite",
    "requestMirror",
  ]);
  switch (type) {
    case "RequestHeaderModifier":
    case "ResponseHeaderModifier": {
      const key = type === "RequestHeaderModifier" ? "requestHeaderModifier" : "responseHeaderModifier";
      return { type, modifier: headerModifier(o[key], join(p, key), f) };
    }
    case "RequestRedirect": {
      const q = join(p, "requestRedirect");
      const r = f.obj(o["requestRedirect"], q) ?? {};
      f.known(r, q, ["scheme", "hostname", "path", "port", "statusCode"]);
      const scheme =
        r["scheme"] === undefined
          ? undefined
          : f.oneOf(r["scheme"], join(q, "scheme"), ["http", "https"] as const);
      const hostname = f.str(r["hostname"], join(q, "hostname"));
      if (hostname !== undefined && hostnameProblem(hostname))
        f.fail(join(q, "hostname"), hostnameProblem(hostname) ?? "");
      const path = pathModifier(r["path"], join(q, "path"), f);
      const port = f.int(r["port"], join(q, "port"), 1, 65535);
      const statusCode = f.int(r["statusCode"], join(q, "statusCode"), 300, 399) ?? 302;
      if (![301, 302, 303, 307, 308].includes(statusCode))
        f.fail(join(q, "statusCode"), "must be 301, 302, 303, 307 or 308");
      return {
        type,
        statusCode,
        ...(scheme !== undefined ? { scheme } : {}),
        ...(hostname !== undefined ? { hostname } : {}),
        ...(path !== undefined ? { path } : {}),
        ...(port !== undefined ? { port } : {}),
      };
    }
    case "URLRewrite": {
      const q = join(p, "urlRewrite");
      const r = f.obj(o["urlRewrite"], q) ?? {};
      f.known(r, q, ["hostname", "path"]);
      const hostname = f.str(r["hostname"], join(q, "hostname"));
      if (hostname !== undefined && hostnameProblem(hostname))
        f.fail(join(q, "hostname"), hostnameProblem(hostname) ?? "");
      const path = pathModifier(r["path"], join(q, "path"), f);
      return {
        type,
        ...(hostname !== undefined ? { hostname } : {}),
        ...(path !== undefined ? { path } : {}),
      };
    }
    case "RequestMirror": {
      const q = join(p, "requestMirror");
      const r = f.obj(o["requestMirror"], q) ?? {};
      f.known(r, q, ["backendRef", "percent", "fraction"]);
      const share = mirrorShare(r, q, f);
      return {
        type,
        backendRef: objectRef(r["backendRef"], join(q, "backendRef"), f),
        ...(share !== undefined ? { fraction: share } : {}),
      };
    }
    default:
      return undefined;
  }
}

/** `percent` (0-100) or `fraction` {numerator, denominator (default 100)} of a RequestMirror, as 0..1. */
function mirrorShare(r: Record<string, unknown>, q: string, f: Fields): number | undefined {
  const percent = f.int(r["percent"], join(q, "percent"), 0, 100);
  const fo = f.obj(r["fraction"], join(q, "fraction"));
  if (percent !== undefined && fo) f.fail(q, "percent and fraction cannot be used together");
  if (percent !== undefined) return percent / 100;
  if (!fo) return undefined;
  f.known(fo, join(q, "fraction"), ["numerator", "denominator"]);
  const num = f.int(fo["numerator"], join(q, "fraction.numerator"), 0, 1_000_000, true) ?? 0;
  const den = f.int(fo["denominator"], join(q, "fraction.denominator"), 1, 1_000_000) ?? 100;
  if (num > den) f.fail(join(q, "fraction.numerator"), "must not exceed the denominator");
  return Math.min(num / den, 1);
}

function objectRef(v: unknown, p: string, f: Fields): BackendObjectRef {
  const o = f.obj(v, p) ?? (f.fail(p, "is required") as undefined) ?? {};
  const namespace = f.str(o["namespace"], join(p, "namespace"));
  const port = f.int(o["port"], join(p, "port"), 1, 65535);
  const group = f.str(o["group"], join(p, "group")) ?? "";
  const kind = f.str(o["kind"], join(p, "kind")) ?? "Service";
  if (group === "" && kind === "Service" && port === undefined)
    f.fail(join(p, "port"), "is required for a Service");
  return {
    group,
    kind,
    name: f.str(o["name"], join(p, "name"), true) ?? "",
    ...(namespace !== undefined ? { namespace } : {}),
    ...(port !== undefined ? { port } : {}),
  };
}

export function backendRef(
  v: unknown,
  p: string,
  f: Fields,
  allowed: readonly string[] = ["RequestHeaderModifier", "ResponseHeaderModifier"],
): BackendRef {
  const o = f.obj(v, p) ?? {};
  f.known(o, p, ["group", "kind", "name", "namespace", "port", "weight", "filters"]);
  const filters = f
    .arr(o["filters"], join(p, "filters"))
    .map((x, i) => filter(x, `${p}.filters[${i}]`, f))
    .filter((x): x is RouteFilter => x !== undefined);
  filters.forEach((x, i) => {
    if (!allowed.includes(x.type))
      f.fail(
        `${p}.filters[${i}].type`,
        `${x.type} is not supported on a backendRef (${allowed.join(", ")} are)`,
      );
  });
  const weight = f.int(o["weight"], join(p, "weight"), 0, 1_000_000) ?? 1;
  return { ...objectRef(o, p, f), weight, ...(filters.length > 0 ? { filters } : {}) };
}
