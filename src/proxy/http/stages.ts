/**
 * The stage loop of an HTTP request, shared by HTTP/1.1 (judged.ts) and
 * HTTP/2 (http2/judge.ts): every stage of the lookup must admit the request
 * (`also`: the client's egress, then the server's ingress rules, in one hop),
 * and each stage judges it as the previous stage's header mismatch actions
 * left it, as two proxies in a row would.
 *
 *   request R --view--> HttpRequestLike --stage's matcher--> {allowed, ruleIndex, actions}
 *             <--edit(R, actions)-- (the next stage judges, and upstream gets, the edited R)
 *
 * R is each parser's own form of the request (the HTTP/1 field list, the
 * HTTP/2 header record): `edit` changes it, `view` is what the rules read.
 */
import {
  compileHttpRules,
  type HeaderAction,
  type HttpMatcher,
  type HttpRequestLike,
} from "../../policy/l7/http.js";
import type { L7Spec } from "../../policy/mapstate.js";
import { l7Admits, type L7LookupResult } from "../types.js";

export interface StagesVerdict<R> {
  readonly allowed: boolean;
  /** The rule that allowed the request in the first stage that has rules. */
  readonly rule: number | undefined;
  /** The request after every stage's actions, and the view of it the last stage judged. */
  readonly req: R;
  readonly judged: HttpRequestLike;
  /** Every action taken, stage by stage. */
  readonly actions: readonly HeaderAction[];
}

// Compiled matchers per spec object (specs are immutable): a memo, not state.
const matchers = new WeakMap<L7Spec, HttpMatcher>();

/** Throws when a stage's rules do not compile: the caller fails closed. */
export function judgeStages<R>(
  policy: L7LookupResult,
  req: R,
  view: (r: R) => HttpRequestLike,
  edit: (r: R, actions: readonly HeaderAction[]) => R,
): StagesVerdict<R> {
  // One stage (the common case): the same steps as the loop below, without its closure and copies.
  if (policy.also === undefined) {
    const judged = view(req);
    if (policy.allowAll) return { allowed: true, rule: undefined, req, judged, actions: NO_ACTIONS };
    const v = matcherOf(policy.spec).match(judged);
    if (!v.allowed || !v.actions) {
      return { allowed: v.allowed, rule: v.ruleIndex, req, judged, actions: NO_ACTIONS };
    }
    const cur = edit(req, v.actions);
    return { allowed: true, rule: v.ruleIndex, req: cur, judged: view(cur), actions: v.actions };
  }
  let rule: number | undefined;
  let cur = req;
  let judged = view(cur);
  const actions: HeaderAction[] = [];
  const allowed = l7Admits(policy, (spec) => {
    const v = matcherOf(spec).match(judged);
    rule ??= v.ruleIndex;
    if (v.allowed && v.actions) {
      actions.push(...v.actions);
      cur = edit(cur, v.actions);
      judged = view(cur);
    }
    return v.allowed;
  });
  return { allowed, rule, req: cur, judged, actions };
}

const NO_ACTIONS: readonly HeaderAction[] = Object.freeze([]);

function matcherOf(spec: L7Spec): HttpMatcher {
  let m = matchers.get(spec);
  if (!m) matchers.set(spec, (m = compileHttpRules(spec.http)));
  return m;
}
