/** One HTTP/2 request against every stage of an L7 lookup result. */
import { compileHttpRules, type HttpMatcher } from "../../policy/l7/http.js";
import type { L7Spec } from "../../policy/mapstate.js";
import { l7Admits, type L7LookupResult } from "../types.js";
import type { H2Request } from "./headers.js";

export interface H2Verdict {
  readonly allowed: boolean;
  /** The rule that allowed the request in the first stage that has rules. */
  readonly rule?: number;
}

// Compiled matchers per spec object (specs are immutable): a memo, not state.
const matchers = new WeakMap<L7Spec, HttpMatcher>();

/**
 * Every stage must admit the request (`also`: the client's egress and the
 * server's ingress rules, in one hop). Throws when a stage's rules do not
 * compile; the caller fails closed.
 */
export function judgeRequest(r: L7LookupResult, req: H2Request, normalisedPath: string): H2Verdict {
  let rule: number | undefined;
  let first = true;
  const allowed = l7Admits(r, (spec) => {
    let m = matchers.get(spec);
    if (!m) matchers.set(spec, (m = compileHttpRules(spec.http)));
    const v = m.match({
      method: req.method,
      path: normalisedPath,
      host: req.authority,
      headers: req.headers,
    });
    if (first) rule = v.ruleIndex;
    first = false;
    return v.allowed;
  });
  return allowed && rule !== undefined ? { allowed, rule } : { allowed };
}
