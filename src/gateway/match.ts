/**
 * One request -> what the gateway does with it (pure; the random source is
 * an input):
 *
 *   HTTPS: the listener the server name picks is not the one the Host picks: 421
 *   port's listeners --most specific hostname--> listener --> virtual host
 *     --> first rule in precedence order whose match holds (a gRPC call: the
 *         GRPCRoute rules, then the HTTPRoute rules)
 *         none: 404 | redirect: 3xx + Location | forward: a backend by weight
 *         (a backendRef that did not resolve, or every weight 0: 500), then
 *         that backendRef's own filters (its RequestRedirect: 3xx instead)
 */
import { bestMatch, requestHost } from "./hostnames.js";
import { applyRequestFilters, splitTarget, type OutgoingRequest } from "./filters.js";
import type { HeaderModifier, RouteFilter } from "./model.js";
import type {
  BackendTarget,
  CompiledMatch,
  CompiledRule,
  CompiledStringMatch,
  ServedPort,
  VirtualHost,
} from "./table.js";

export interface GatewayRequest {
  readonly method: string;
  /** Origin-form target: path and query. */
  readonly target: string;
  readonly host: string | undefined;
  /** In order, names as received; `lower` (when the parser gave it) is the name in lower case. */
  readonly headers: readonly { readonly name: string; readonly value: string; readonly lower?: string }[];
  /** A gRPC call (content-type application/grpc...): GRPCRoute rules first. */
  readonly grpc?: boolean;
  /** HTTPS: the TLS server name the client sent ("" when none). */
  readonly sni?: string;
}

export type RouteDecision =
  | { readonly kind: "not-found" }
  | { readonly kind: "misdirected" }
  | {
      readonly kind: "redirect";
      readonly rule: CompiledRule;
      readonly status: number;
      readonly location: string;
    }
  | { readonly kind: "error"; readonly rule: CompiledRule; readonly status: 500; readonly reason: string }
  | {
      readonly kind: "forward";
      readonly rule: CompiledRule;
      readonly backend: BackendTarget;
      readonly request: OutgoingRequest;
      readonly responseHeaders: readonly HeaderModifier[];
      readonly mirrors: readonly BackendTarget[];
    };

function queryValue(query: string, name: string): string | undefined {
  if (query === "") return undefined;
  for (const part of query.split("&")) {
    const eq = part.indexOf("=");
    const k = safeDecode(eq < 0 ? part : part.slice(0, eq));
    if (k === name) return safeDecode(eq < 0 ? "" : part.slice(eq + 1));
  }
  return undefined;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, " "));
  } catch {
    return s;
  }
}

function valueMatches(m: CompiledStringMatch, v: string | undefined): boolean {
  if (v === undefined) return false;
  return m.exact !== undefined ? m.exact === v : (m.regex?.matches(v) ?? false);
}

export function matchHolds(m: CompiledMatch, req: GatewayRequest, path: string, query: string): boolean {
  if (m.method !== undefined && m.method !== req.method) return false;
  if (m.pathType === "Exact" && path !== m.path) return false;
  if (m.pathType === "PathPrefix" && m.path !== "" && path !== m.path && !underPrefix(path, m.path))
    return false;
  if (m.pathType === "RegularExpression" && !(m.pathRegex?.matches(path) ?? false)) return false;
  for (const h of m.headers) {
    // The first field of that name (a repeated header is judged by its first value).
    const v = req.headers.find((x) => (x.lower ?? x.name.toLowerCase()) === h.key)?.value;
    if (!valueMatches(h, v)) return false;
  }
  for (const q of m.queryParams) if (!valueMatches(q, queryValue(query, q.key))) return false;
  return true;
}

/** `path` starts with `prefix` + "/" (without making that string). */
function underPrefix(path: string, prefix: string): boolean {
  return path.length > prefix.length && path.charCodeAt(prefix.length) === 0x2f && path.startsWith(prefix);
}

/**
 * HTTPS: the listener the TLS server name chose is not the one the Host
 * chooses (a connection reused for another name): 421, as the spec says.
 */
export function misdirected(port: ServedPort, req: GatewayRequest): boolean {
  if (req.sni === undefined || port.protocol !== "HTTPS") return false;
  const byName = bestMatch(port.listeners, (l) => l.hostname, requestHost(req.sni));
  return byName !== bestMatch(port.listeners, (l) => l.hostname, requestHost(req.host));
}

/** The rule that takes the request on this port, if any. */
export function findRule(port: ServedPort, req: GatewayRequest): CompiledRule | undefined {
  const vhost = virtualHost(port, req.host);
  if (!vhost) return undefined;
  const { path, query } = splitTarget(req.target);
  if (req.grpc && vhost.grpcRules) {
    const g = firstHolding(vhost.grpcRules, req, path, query);
    if (g) return g;
  }
  return firstHolding(vhost.rules, req, path, query);
}

function firstHolding(
  rules: readonly CompiledRule[],
  req: GatewayRequest,
  path: string,
  query: string,
): CompiledRule | undefined {
  for (const r of rules) if (matchHolds(r.match, req, path, query)) return r;
  return undefined;
}

/**
 * The virtual host a Host header picks on a port: its listener by the most specific hostname,
 * then the listener's most specific route hostname. Remembered per port (a RouteTable is never
 * changed, only replaced) and per Host value as received, up to HOSTS_REMEMBERED of them: the
 * common request then costs one map lookup instead of the walk and the lower-casing.
 */
function virtualHost(port: ServedPort, rawHost: string | undefined): VirtualHost | undefined {
  let known = HOSTS.get(port);
  if (!known) HOSTS.set(port, (known = new Map()));
  const key = rawHost ?? "";
  const hit = known.get(key);
  if (hit !== undefined) return hit ?? undefined;
  const host = requestHost(rawHost);
  const listener = bestMatch(port.listeners, (l) => l.hostname, host);
  const vhost = listener ? bestMatch(listener.vhosts, (v) => v.hostname, host) : undefined;
  // A client choosing Host values cannot grow it without bound: names only (a DNS name and a
  // port fit in 260), and once full it starts again.
  if (key.length > HOST_KEY_MAX) return vhost;
  if (known.size >= HOSTS_REMEMBERED) known.clear();
  known.set(key, vhost ?? null);
  return vhost;
}

const HOSTS = new WeakMap<ServedPort, Map<string, VirtualHost | null>>();
const HOSTS_REMEMBERED = 1024;
const HOST_KEY_MAX = 260;

/** A backend by weight; undefined when every weight is 0 (or there is none). */
export function pickBackend(
  backends: readonly BackendTarget[],
  random: () => number,
): BackendTarget | undefined {
  let total = 0;
  for (const b of backends) total += b.weight;
  if (total <= 0) return undefined;
  let x = random() * total;
  for (const b of backends) {
    if (b.weight <= 0) continue;
    if (x < b.weight) return b;
    x -= b.weight;
  }
  return backends.filter((b) => b.weight > 0).at(-1);
}

export function decide(
  port: ServedPort,
  req: GatewayRequest,
  random: () => number = Math.random,
): RouteDecision {
  if (misdirected(port, req)) return { kind: "misdirected" };
  const rule = findRule(port, req);
  if (!rule) return { kind: "not-found" };
  const scheme = port.protocol === "HTTPS" ? "https" : "http";
  const out = applyRequestFilters(rule, req, { scheme, port: port.port });
  if (out.kind === "redirect") return { kind: "redirect", rule, status: out.status, location: out.location };
  const backend = pickBackend(rule.backends, random);
  if (!backend)
    return {
      kind: "error",
      rule,
      status: 500,
      reason: rule.backends.length === 0 ? "the rule has no backendRefs" : "every backendRef has weight 0",
    };
  if (backend.invalid)
    return {
      kind: "error",
      rule,
      status: 500,
      reason: `backendRef ${backend.namespace}/${backend.name}: ${backend.invalid}`,
    };
  // The picked backendRef's own filters, on the request as the rule's filters left it (with the
  // rule's match, for ReplacePrefixMatch): header modifiers, a URLRewrite, or a RequestRedirect
  // that answers instead of forwarding.
  const own = backend.filters ?? [];
  const mine =
    own.length === 0
      ? out
      : applyRequestFilters(
          { ...rule, filters: own },
          { ...req, ...out.request },
          { scheme, port: port.port },
        );
  if (mine.kind === "redirect")
    return { kind: "redirect", rule, status: mine.status, location: mine.location };
  const request = mine.request;
  return {
    kind: "forward",
    rule,
    backend,
    request,
    responseHeaders:
      own.length === 0 ? ruleResponseHeaders(rule) : responseModifiers([...rule.filters, ...own]),
    mirrors:
      rule.mirrors.length === 0
        ? NO_MIRRORS
        : rule.mirrors.filter((m) => m.fraction === undefined || random() < m.fraction),
  };
}

const NO_MIRRORS: readonly BackendTarget[] = [];

function responseModifiers(filters: readonly RouteFilter[]): HeaderModifier[] {
  return filters.flatMap((f) => (f.type === "ResponseHeaderModifier" ? [f.modifier] : []));
}

/** A rule's ResponseHeaderModifiers, found once per rule (rules are never changed). */
function ruleResponseHeaders(rule: CompiledRule): readonly HeaderModifier[] {
  let mods = RESPONSE_MODS.get(rule);
  if (!mods) RESPONSE_MODS.set(rule, (mods = responseModifiers(rule.filters)));
  return mods;
}

const RESPONSE_MODS = new WeakMap<CompiledRule, readonly HeaderModifier[]>();
