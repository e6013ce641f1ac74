/** One HTTP/2 request against every stage of an L7 lookup result. */
import { applyHeaderActions, type HeaderAction } from "../../policy/l7/http.js";
import { judgeStages } from "../http/stages.js";
import type { L7LookupResult } from "../types.js";
import type { H2Request } from "./headers.js";

export interface H2Verdict {
  readonly allowed: boolean;
  /** The rule that allowed the request in the first stage that has rules. */
  readonly rule?: number;
  /** Header mismatch actions taken, and the regular fields to forward after them. */
  readonly actions?: readonly HeaderAction[];
  readonly headers?: Readonly<Record<string, string>>;
}

/**
 * Every stage must admit the request, each judging the fields as the
 * previous stage's actions left them (stages.ts). Throws when a stage's
 * rules do not compile; the caller fails closed.
 */
export function judgeRequest(r: L7LookupResult, req: H2Request, normalisedPath: string): H2Verdict {
  const v = judgeStages(
    r,
    req.headers,
    (headers) => ({ method: req.method, path: normalisedPath, host: req.authority, headers }),
    applyHeaderActions,
  );
  const edited = v.actions.length > 0 ? { actions: v.actions, headers: v.req } : {};
  return v.allowed && v.rule !== undefined
    ? { allowed: v.allowed, rule: v.rule, ...edited }
    : { allowed: v.allowed, ...edited };
}
