/**
 * HTTP rules of a port, compiled once and matched per request.
 *
 *   HttpRule[]  --compileHttpRules-->  HttpMatcher.match({method, path, host?, headers?})
 *                                        -> {allowed, ruleIndex?}
 *
 * As Envoy does for Cilium (semantics §7): `method`, `path` and `host` are RE2
 * regular expressions matched against the WHOLE value (`/public` does not
 * match `/public/x`), evaluated by re2js, which runs in linear time whatever
 * the pattern, so a user's regex cannot stall the proxy. Rules are ORed;
 * the fields of one rule are ANDed; the empty rule `{}` matches everything.
 *
 * - `path` is matched against the request target as given (Envoy's `:path`,
 *   query string included). Callers normalise first with `normalizeHttpPath`
 *   and forward the normalised path, so that `/public/../admin` is judged as
 *   `/admin`, the path the server will serve.
 * - `host` is matched against the `:authority` as received, port included
 *   (`example.com:8080`), as Envoy does; use `example\.com(:[0-9]+)?` to
 *   accept any port. When `host` is not given, the `Host` header is used.
 * - headers: names case-insensitive; without `value` the header must be
 *   present; with `value` the value must be equal, byte for byte.
 * - `headerMatches[].mismatch` (Cilium's MismatchAction, as cilium-envoy
 *   applies it): a header match with an action never fails its rule. When the
 *   rest of the rule matches and the header does not, the action is taken:
 *   LOG records the mismatch; ADD appends the value (a repeated field, seen
 *   joined with ", "); DELETE removes a header whose value is wrong (nothing
 *   when it is absent or the match is presence-only); REPLACE sets the value.
 *   As in cilium-envoy, when any rule of the port has an action, every rule
 *   whose other fields match runs its actions, in order, each on the headers
 *   the previous ones left; the request is allowed if one such rule matched.
 *   Without actions the first matching rule decides (nothing to run).
 *   The caller forwards the headers as the actions left them.
 */
import { RE2JS } from "re2js";
import { compileExact, type ExactMatcher } from "./exact-match.js";
import { MembraneError } from "../../errors.js";
import type { HttpRule, MismatchAction } from "../types.js";

export interface HttpRequestLike {
  readonly method: string;
  readonly path: string;
  /** `:authority`; defaults to the `Host` header. */
  readonly host?: string;
  readonly headers?: Readonly<Record<string, string>>;
}

/** One mismatch action taken; `name` lower-case; `value`: the value added or set. */
export interface HeaderAction {
  readonly action: MismatchAction;
  readonly name: string;
  readonly value?: string;
}

/** Flow text of an action (`ADD x-a: 1`): the name and the value the policy gave, never the client's. */
export const actionText = (a: HeaderAction): string =>
  `${a.action} ${a.name}${a.value !== undefined ? `: ${a.value}` : ""}`;

export interface HttpVerdict {
  readonly allowed: boolean;
  /** Index of the first rule that matched. */
  readonly ruleIndex?: number;
  /** The mismatch actions taken, in order (only when allowed and some were). */
  readonly actions?: readonly HeaderAction[];
}

export interface HttpMatcher {
  readonly ruleCount: number;
  match(req: HttpRequestLike): HttpVerdict;
}

/**
 * The header record after `actions` (what the caller forwards and what a
 * later stage judges): names lower-case, repeated fields joined as judged.
 */
/** An HTTP field value the proxy forwards (RFC 9110: VCHAR, obs-text, SP, HTAB): also what a policy may add. */
export const HEADER_FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export function applyHeaderActions(
  headers: Readonly<Record<string, string>>,
  actions: readonly HeaderAction[],
): Record<string, string> {
  const out = Object.create(null) as Record<string, string>;
  for (const [k, v] of Object.entries(headers)) {
    const l = k.toLowerCase();
    out[l] = out[l] === undefined ? v : `${out[l]}, ${v}`;
  }
  for (const a of actions) {
    if (a.action === "ADD")
      out[a.name] = out[a.name] === undefined ? (a.value ?? "") : `${out[a.name]}, ${a.value ?? ""}`;
    else if (a.action === "REPLACE") out[a.name] = a.value ?? "";
    else if (a.action === "DELETE") delete out[a.name];
  }
  return out;
}

interface CompiledHttpRule {
  readonly method?: ExactMatcher;
  readonly path?: ExactMatcher;
  readonly host?: ExactMatcher;
  /** Lower-cased name, and the exact value when one is required. */
  readonly headers: readonly { readonly name: string; readonly value?: string }[];
  /** Header matches with a mismatch action: they never fail the rule. */
  readonly actions: readonly {
    readonly name: string;
    readonly value?: string;
    readonly mismatch: MismatchAction;
  }[];
}

/**
 * Compiles the rules. Throws POLICY_INVALID naming the rule and field when a
 * regex does not compile under RE2 (e.g. look-ahead, back-references).
 */
const DENIED: HttpVerdict = Object.freeze({ allowed: false });

export function compileHttpRules(rules: readonly HttpRule[]): HttpMatcher {
  const compiled = rules.map((r, i) => compileRule(r, i));
  const withActions = compiled.some((r) => r.actions.length > 0);
  // Rules on method and path alone (the common case) never read the header fields: the
  // lower-cased copy is made only when a rule needs it.
  const withHeaders = withActions || compiled.some((r) => r.headers.length > 0 || r.host !== undefined);
  const NO_HEADERS: ReadonlyMap<string, string> = new Map();
  // Verdicts without actions are values: one frozen object each, not one per request.
  const allowedBy = compiled.map((_, i): HttpVerdict => Object.freeze({ allowed: true, ruleIndex: i }));
  return {
    ruleCount: compiled.length,
    match(req: HttpRequestLike): HttpVerdict {
      if (!withActions) {
        const headers = withHeaders ? lowerHeaders(req.headers) : NO_HEADERS;
        const host = req.host ?? headers.get("host");
        for (let i = 0; i < compiled.length; i++) {
          if (ruleMatches(compiled[i] as CompiledHttpRule, req, host, headers))
            return allowedBy[i] as HttpVerdict;
        }
        return DENIED;
      }
      const headers = lowerHeaders(req.headers);
      const host = req.host ?? headers.get("host");
      let ruleIndex: number | undefined;
      const actions: HeaderAction[] = [];
      compiled.forEach((r, i) => {
        if (!ruleMatches(r, req, host, headers)) return;
        ruleIndex ??= i;
        for (const a of r.actions) runAction(a, headers, actions);
      });
      if (ruleIndex === undefined) return { allowed: false };
      return actions.length > 0 ? { allowed: true, ruleIndex, actions } : { allowed: true, ruleIndex };
    },
  };
}

/** Says what is wrong with an HTTP regex, or undefined when RE2 accepts it. */
export function httpRegexProblem(pattern: string): string | undefined {
  try {
    RE2JS.compile(pattern);
    return undefined;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

function compileRule(r: HttpRule, index: number): CompiledHttpRule {
  const re = (field: "method" | "path" | "host"): ExactMatcher | undefined => {
    const p = r[field];
    if (p === undefined) return undefined;
    try {
      return compileExact(p);
    } catch (e) {
      throw new MembraneError(
        "POLICY_INVALID",
        `Cannot compile HTTP ${field} regex ${JSON.stringify(p)} of rule ${index}: ${e instanceof Error ? e.message : String(e)}`,
        {
          location: { path: `http[${index}].${field}` },
          hint: "Use RE2 syntax (no look-around, no back-references).",
          cause: e,
        },
      );
    }
  };
  const method = re("method");
  const path = re("path");
  const host = re("host");
  const lower = (h: HttpRule["headers"][number]): { name: string; value?: string } =>
    h.value === undefined ? { name: h.name.toLowerCase() } : { name: h.name.toLowerCase(), value: h.value };
  const headers = r.headers.filter((h) => h.mismatch === undefined).map(lower);
  const actions = r.headers.flatMap((h) =>
    h.mismatch === undefined ? [] : [{ ...lower(h), mismatch: h.mismatch }],
  );
  return {
    ...(method ? { method } : {}),
    ...(path ? { path } : {}),
    ...(host ? { host } : {}),
    headers,
    actions,
  };
}

/** One header match with an action, on the (mutable) header view; records what it did. */
function runAction(
  a: CompiledHttpRule["actions"][number],
  headers: Map<string, string>,
  out: HeaderAction[],
): void {
  const v = headers.get(a.name);
  if (v !== undefined && (a.value === undefined || v === a.value)) return; // matches: nothing to do
  switch (a.mismatch) {
    case "LOG":
      out.push({ action: "LOG", name: a.name });
      return;
    case "ADD": {
      const value = a.value ?? "";
      headers.set(a.name, v === undefined ? value : `${v}, ${value}`);
      out.push({ action: "ADD", name: a.name, value });
      return;
    }
    case "DELETE":
      if (a.value === undefined || v === undefined) return; // presence match failed / nothing to remove
      headers.delete(a.name);
      out.push({ action: "DELETE", name: a.name });
      return;
    case "REPLACE": {
      const value = a.value ?? "";
      headers.set(a.name, value);
      out.push({ action: "REPLACE", name: a.name, value });
      return;
    }
  }
}

function ruleMatches(
  r: CompiledHttpRule,
  req: HttpRequestLike,
  host: string | undefined,
  headers: ReadonlyMap<string, string>,
): boolean {
  if (r.method && !r.method.testExact(req.method)) return false;
  if (r.path && !r.path.testExact(req.path)) return false;
  if (r.host && (host === undefined || !r.host.testExact(host))) return false;
  for (const h of r.headers) {
    const v = headers.get(h.name);
    if (v === undefined) return false;
    if (h.value !== undefined && v !== h.value) return false;
  }
  return true;
}

function lowerHeaders(h: Readonly<Record<string, string>> | undefined): Map<string, string> {
  const m = new Map<string, string>();
  if (!h) return m;
  for (const [k, v] of Object.entries(h)) m.set(k.toLowerCase(), v);
  return m;
}

/**
 * RFC 3986 normalisation of a request target's path, as Envoy's
 * `normalize_path` does: percent-encodings of unreserved characters are
 * decoded (`%7E` -> `~`, `%2E` -> `.`), other encodings get upper-case hex,
 * then `.` and `..` segments are removed. The query string is kept as is.
 * Encoded slashes (`%2F`) and backslashes stay encoded: they are not path
 * separators, and a rule must not be bypassed by them.
 */
export function normalizeHttpPath(target: string): string {
  const q = target.indexOf("?");
  const path = q >= 0 ? target.slice(0, q) : target;
  // Nothing to decode and no dot segment (a segment "." or ".." starts the path or follows a "/"):
  // the common path is already normal.
  if (path.indexOf("%") < 0 && path.indexOf("/.") < 0 && path.charCodeAt(0) !== 0x2e) return target;
  const query = q >= 0 ? target.slice(q) : "";
  const decoded = path.replace(/%([0-9a-fA-F]{2})/g, (_m, hex: string) => {
    const c = String.fromCharCode(parseInt(hex, 16));
    return /^[A-Za-z0-9\-._~]$/.test(c) ? c : "%" + hex.toUpperCase();
  });
  return removeDotSegments(decoded) + query;
}

function removeDotSegments(path: string): string {
  const absolute = path.startsWith("/");
  const segs = path.split("/");
  if (absolute) segs.shift();
  const out: string[] = [];
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i] as string;
    const last = i === segs.length - 1;
    if (s === ".") {
      if (last) out.push("");
    } else if (s === "..") {
      out.pop();
      if (last) out.push("");
    } else {
      out.push(s);
    }
  }
  return (absolute ? "/" : "") + out.join("/");
}
