/**
 * HTTPRoute filters on a request (pure):
 *
 *   RequestHeaderModifier  set (replaces every field of the name), add (appends
 *                          to an existing value with ","), remove; names compared
 *                          case-insensitively; applied in that order
 *   URLRewrite             hostname -> Host; path ReplaceFullPath | ReplacePrefixMatch
 *   RequestRedirect        -> status + Location (scheme, host, port, path)
 *   ResponseHeaderModifier is applied by the server to the response head
 *                          (modifyHeaders, the same rules)
 */
import type { GatewayRequest } from "./match.js";
import type { HeaderModifier, PathModifier } from "./model.js";
import type { CompiledRule } from "./table.js";

export interface OutgoingRequest {
  readonly method: string;
  readonly target: string;
  readonly host: string | undefined;
  readonly headers: readonly { readonly name: string; readonly value: string }[];
}

export type FilterOutcome =
  | { readonly kind: "forward"; readonly request: OutgoingRequest }
  | { readonly kind: "redirect"; readonly status: number; readonly location: string };

/** A field; `lower`, when the parser gave it (src/proxy/http/request.ts), is the name in lower case. */
type Field = { readonly name: string; readonly value: string; readonly lower?: string };

const lowerOf = (h: Field): string => h.lower ?? h.name.toLowerCase();

export function modifyHeaders(headers: readonly Field[], m: HeaderModifier): Field[] {
  let out = [...headers];
  for (const s of m.set) {
    const k = s.name.toLowerCase();
    const at = out.findIndex((h) => lowerOf(h) === k);
    out = out.filter((h) => lowerOf(h) !== k);
    out.splice(at < 0 ? out.length : at, 0, { name: s.name, value: s.value });
  }
  for (const a of m.add) {
    const k = a.name.toLowerCase();
    const at = out.findIndex((h) => lowerOf(h) === k);
    if (at < 0) out.push({ name: a.name, value: a.value });
    else {
      const joined = out.filter((h) => lowerOf(h) === k).map((h) => h.value);
      out = out.filter((h, i) => i === at || lowerOf(h) !== k);
      out[at] = { name: (out[at] as Field).name, value: [...joined, a.value].join(",") };
    }
  }
  if (m.remove.length === 0) return out;
  const gone = new Set(m.remove.map((r) => r.toLowerCase()));
  return out.filter((h) => !gone.has(lowerOf(h)));
}

/** The path after a path modifier; `prefix` is the matched PathPrefix (no trailing slash). */
export function rewritePath(path: string, mod: PathModifier, prefix: string): string {
  if (mod.type === "ReplaceFullPath") return mod.value;
  const rest = path.slice(prefix.length); // "" or "/..."
  let out = mod.value;
  if (out.endsWith("/") && rest.startsWith("/")) out = out.slice(0, -1);
  out += rest;
  return out === "" ? "/" : out;
}

export function splitTarget(target: string): { path: string; query: string } {
  const q = target.indexOf("?");
  return q < 0 ? { path: target, query: "" } : { path: target.slice(0, q), query: target.slice(q + 1) };
}

const DEFAULT_PORT = { http: 80, https: 443 } as const;

export function applyRequestFilters(
  rule: CompiledRule,
  req: GatewayRequest,
  listener: { readonly scheme: "http" | "https"; readonly port: number },
): FilterOutcome {
  // The request's own list until a filter changes it (modifyHeaders makes a new one).
  let headers: readonly Field[] = req.headers;
  const split = splitTarget(req.target);
  const query = split.query;
  let path = split.path;
  let host = req.host;
  const prefix = rule.match.pathType === "PathPrefix" ? rule.match.path : "";
  for (const f of rule.filters) {
    if (f.type === "RequestHeaderModifier") headers = modifyHeaders(headers, f.modifier);
    else if (f.type === "URLRewrite") {
      if (f.hostname !== undefined) host = f.hostname;
      if (f.path) path = rewritePath(path, f.path, prefix);
    } else if (f.type === "RequestRedirect") {
      const scheme = f.scheme ?? listener.scheme;
      const port = f.port ?? (f.scheme !== undefined ? DEFAULT_PORT[f.scheme] : listener.port);
      const hostname = f.hostname ?? bareHost(req.host ?? "");
      const showPort = port !== DEFAULT_PORT[scheme];
      const newPath = f.path ? rewritePath(path, f.path, prefix) : path;
      const location = `${scheme}://${hostname}${showPort ? `:${port}` : ""}${newPath}${query !== "" ? `?${query}` : ""}`;
      return { kind: "redirect", status: f.statusCode, location };
    }
  }
  if (host !== req.host && host !== undefined) {
    const copy = [...headers];
    const at = copy.findIndex((h) => lowerOf(h) === "host");
    if (at >= 0) copy[at] = { name: (copy[at] as Field).name, value: host };
    else copy.unshift({ name: "Host", value: host });
    headers = copy;
  }
  // The target as received when its path is (a "?" with nothing after it is dropped, as ever).
  const target = query === "" ? path : path === split.path ? req.target : `${path}?${query}`;
  return { kind: "forward", request: { method: req.method, target, host, headers } };
}

function bareHost(h: string): string {
  if (h.startsWith("[")) return h.slice(0, h.indexOf("]") + 1);
  const c = h.lastIndexOf(":");
  return c < 0 ? h : h.slice(0, c);
}
