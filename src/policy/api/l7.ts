/**
 * `toPorts[].rules`: L7 rules of one kind per port rule.
 *
 *   {http: [...]} | {dns: [...]} | {kafka: [...]}  -> L7Rules
 *   {l7proto, l7}                                  -> not supported (proxylib parsers)
 */
import { RE2JS } from "re2js";
import {
  MISMATCH_ACTIONS,
  type DnsRule,
  type HeaderMatch,
  type HttpRule,
  type L7Rules,
  type MismatchAction,
} from "../types.js";
import { HEADER_FIELD_VALUE } from "../l7/http.js";
import type { Val } from "./fields.js";
import { readKafkaRule } from "./kafka.js";
import { checkFqdn, normaliseFqdn } from "./names.js";
import { type ElementScope, notSupported } from "./scope.js";

const KINDS = ["http", "dns", "kafka", "l7proto"] as const;

/** Undefined when the rules are empty or invalid (invalid ones are reported). */
export function readL7Rules(v: Val, s: ElementScope): L7Rules | undefined {
  const m = v.map([...KINDS, "l7"]);
  if (!m) return undefined;
  const present = KINDS.filter((k) => m.nonEmpty(k));
  if (present.length > 1) {
    return v.error(`only one kind of L7 rules per port rule; found ${present.join(" and ")}`);
  }
  const l7protoVal = m.get("l7proto");
  if (l7protoVal || m.has("l7")) {
    return (l7protoVal ?? v).unsupported(notSupported("l7proto (generic proxylib L7 parsers)"));
  }
  const kind = present[0];
  if (kind === undefined) return undefined;
  const items = (m.get(kind) as Val).list();
  if (!items) return undefined;
  const before = v.ctx.problems.length;
  if (kind === "dns") {
    if (s.dir !== "egress")
      m.get("dns")?.error("DNS rules are allowed on egress only (they filter the pod's own lookups)");
    const rules = items.map(readDnsRule);
    return v.ctx.problems.length > before ? undefined : { kind, rules: rules as DnsRule[] };
  }
  if (kind === "http") {
    const rules = items.map(readHttpRule);
    return v.ctx.problems.length > before ? undefined : { kind, rules: rules as HttpRule[] };
  }
  const rules = items.map(readKafkaRule);
  return v.ctx.problems.length > before
    ? undefined
    : { kind: "kafka", rules: rules.filter((r) => r !== undefined) };
}

function readDnsRule(v: Val): DnsRule | undefined {
  const m = v.map(["matchName", "matchPattern"]);
  if (!m) return undefined;
  const name = m.get("matchName");
  const pattern = m.get("matchPattern");
  if ((name === undefined) === (pattern === undefined))
    return v.error("give exactly one of matchName or matchPattern");
  const field = (name ?? pattern) as Val;
  const text = field.str();
  if (text === undefined) return undefined;
  const bad = checkFqdn(text, pattern !== undefined);
  if (bad) return field.error(bad);
  return name ? { matchName: normaliseFqdn(text) } : { matchPattern: normaliseFqdn(text) };
}

function readHttpRule(v: Val): HttpRule | undefined {
  const m = v.map(["method", "path", "host", "headers", "headerMatches"]);
  if (!m) return undefined;
  const out: { method?: string; path?: string; host?: string; headers: HeaderMatch[] } = { headers: [] };
  for (const f of ["method", "path", "host"] as const) {
    const fv = m.get(f);
    const re = fv && readRegex(fv);
    if (re !== undefined) out[f] = re;
  }
  for (const h of m.get("headers")?.list() ?? []) {
    const text = h.str();
    const hm = text === undefined ? undefined : parseHeader(text, h);
    if (hm) out.headers.push(hm);
  }
  for (const h of m.get("headerMatches")?.list() ?? []) {
    const hm = readHeaderMatch(h);
    if (hm) out.headers.push(hm);
  }
  return out;
}

function readRegex(v: Val): string | undefined {
  const text = v.str();
  if (text === undefined) return undefined;
  try {
    RE2JS.compile(text);
  } catch (e) {
    return v.error(
      `invalid regular expression ${JSON.stringify(text)}: ${(e as Error).message} (RE2 syntax)`,
    );
  }
  return text;
}

// RFC 9110 token characters.
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** `Name` (present), `Name value` or `Name: value` (exact value), as Cilium splits them. */
function parseHeader(text: string, v: Val): HeaderMatch | undefined {
  const sp = text.indexOf(" ");
  const name = (sp < 0 ? text : text.slice(0, sp)).replace(/:+$/, "");
  if (!TOKEN.test(name)) {
    return v.error(`invalid header ${JSON.stringify(text)}: write "Name", "Name: value" or "Name value"`);
  }
  if (sp < 0) return { name };
  return { name, value: text.slice(sp + 1).trimStart() };
}

function readHeaderMatch(v: Val): HeaderMatch | undefined {
  const m = v.map(["name", "value", "secret", "mismatch"]);
  if (!m) return undefined;
  const name = m.need("name")?.str();
  const valueVal = m.get("value");
  const value = valueVal?.str();
  const secret = m.get("secret");
  if (secret) secret.unsupported(notSupported("headerMatches[].secret"));
  const mismatchVal = m.get("mismatch");
  const text = mismatchVal?.str();
  let mismatch: MismatchAction | undefined;
  if (text !== undefined && text !== "") {
    if (!(MISMATCH_ACTIONS as readonly string[]).includes(text)) {
      return mismatchVal?.error(
        `unknown mismatch action "${text}"; Cilium knows LOG, ADD, DELETE and REPLACE`,
      );
    }
    mismatch = text as MismatchAction;
  }
  if (name === undefined || secret || (valueVal && value === undefined)) return undefined;
  if (!TOKEN.test(name)) return m.get("name")?.error(`invalid header name ${JSON.stringify(name)}`);
  if (mismatch !== undefined) {
    const bad = mismatchProblem(name.toLowerCase(), mismatch, value);
    if (bad)
      return (mismatch === "ADD" || mismatch === "REPLACE" ? (valueVal ?? v) : mismatchVal)?.error(bad);
  }
  return { name, ...(value !== undefined ? { value } : {}), ...(mismatch ? { mismatch } : {}) };
}

/**
 * Headers the proxy itself needs as they are: framing (a changed length
 * would split one request into two), connection handling, and the Host the
 * `host` rules judge and the server routes on. An action may not touch them.
 */
const UNTOUCHABLE = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "upgrade",
  "expect",
  "http2-settings",
]);

function mismatchProblem(
  lower: string,
  action: MismatchAction,
  value: string | undefined,
): string | undefined {
  if (action !== "LOG" && UNTOUCHABLE.has(lower))
    return `mismatch: ${action} cannot change the ${lower} header (the proxy's framing and routing depend on it)`;
  if ((action === "ADD" || action === "REPLACE") && value === undefined)
    return `mismatch: ${action} needs a value (the value to ${action === "ADD" ? "add" : "set"})`;
  if (value !== undefined && !HEADER_FIELD_VALUE.test(value))
    return "a header value may hold only visible characters, spaces and tabs (no NUL, CR, LF or other control characters)";
  return undefined;
}
