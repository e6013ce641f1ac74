/** One HTTP/2 request against every stage of an L7 lookup result. */
import {
  applyHeaderActions,
  compileHttpRules,
  type HeaderAction,
  type HttpMatcher,
} from "../../policy/l7/http.js";
import type { L7Spec } from "../../policy/mapstate.js";
import { l7Admits, type L7LookupResult } from "../types.js";
import type { H2Request } from "./headers.js";

export interface H2Verdict {
  readonly allowed: boolean;
  /** The rule that allowed the request in the first stage that has rules. */
  readonly rule?: number;
  /** Header mismatch actions taken, and the regular fields to forward after them. */
  readonly actions?: readonly HeaderAction[];
  readonly headers?: Readonly<Record<string, string>>;
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
  let headers = req.headers;
  const actions: HeaderAction[] = [];
  const allowed = l7Admits(r, (spec) => {
    let m = matchers.get(spec);
    if (!m) matchers.set(spec, (m = compileHttpRules(spec.http)));
    const v = m.match({
      method: req.method,
      path: normalisedPath,
      host: req.authority,
      headers,
    });
    if (first) rule = v.ruleIndex;
    first = false;
    // The next stage judges, and upstream gets, the fields as the actions left them.
    if (v.allowed && v.actions) {
      actions.push(...v.actions);
      headers = applyHeaderActions(headers, v.actions);
    }
    return v.allowed;
  });
  const edited = actions.length > 0 ? { actions, headers } : {};
  return allowed && rule !== undefined ? { allowed, rule, ...edited } : { allowed, ...edited };
}
