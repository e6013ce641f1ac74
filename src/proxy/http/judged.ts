/**
 * The request as the HTTP rules see it, read from the same parsed head that
 * `serializeRequest` writes upstream.
 *
 *   RequestHead.headers (as forwarded) --judgedRequest--> HttpRequestLike --> HttpMatcher
 *                                      --serializeRequest--> upstream bytes
 */
import { compileHttpRules, type HttpMatcher, type HttpRequestLike } from "../../policy/l7/http.js";
import type { L7Spec } from "../../policy/mapstate.js";
import { l7Admits, type L7LookupResult } from "../types.js";
import type { RequestHead } from "./request.js";

/** Method, normalised path, Host and every forwarded field (repeated ones joined with ", ", RFC 9110 §5.3). */
export function judgedRequest(head: RequestHead, path: string): HttpRequestLike {
  const headers = Object.create(null) as Record<string, string>;
  for (const h of head.headers) {
    const prev = headers[h.lower];
    headers[h.lower] = prev === undefined ? h.value : `${prev}, ${h.value}`;
  }
  return { method: head.method, path, ...(head.host !== undefined ? { host: head.host } : {}), headers };
}

/**
 * A header that a rule of some stage names and that the request carries
 * more than once. The rules judge the joined value, but servers disagree
 * on repeats: many keep only the first (or the last) of a singleton field
 * such as Authorization, so the value a rule saw is not the value the
 * server acts on. Such a request is refused (400), whatever the verdict
 * would have been.
 */
export function repeatedRuleHeader(head: RequestHead, policy: L7LookupResult): boolean {
  const named = new Set<string>();
  for (let s: L7LookupResult | undefined = policy; s; s = s.also) {
    for (const r of s.spec.http) for (const h of r.headers) named.add(h.name.toLowerCase());
  }
  if (named.size === 0) return false;
  const seen = new Set<string>();
  for (const h of head.headers) {
    if (!named.has(h.lower)) continue;
    if (seen.has(h.lower)) return true;
    seen.add(h.lower);
  }
  return false;
}

// Compiled matchers per spec object (specs are immutable): a memo, not state.
const matchers = new WeakMap<L7Spec, HttpMatcher>();

/**
 * Every stage (the client's egress, the server's ingress) must admit the
 * request; the rule reported is the first stage's. Throws when a stage's
 * rules do not compile (the caller fails closed).
 */
export function judgeHttp(
  policy: L7LookupResult,
  judged: HttpRequestLike,
): { readonly allowed: boolean; readonly rule: number | undefined } {
  let rule: number | undefined;
  const allowed = l7Admits(policy, (spec) => {
    let m = matchers.get(spec);
    if (!m) matchers.set(spec, (m = compileHttpRules(spec.http)));
    const v = m.match(judged);
    rule ??= v.ruleIndex;
    return v.allowed;
  });
  return { allowed, rule };
}
