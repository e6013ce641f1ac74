/**
 * HTTPRoute `rules[].timeouts` (Gateway API, Extended): the duration format
 * and the rule's two limits.
 *
 *   request        -- the whole exchange, from the request's arrival to the
 *                     response's end (over every attempt)
 *   backendRequest -- one attempt to a backend, from sending it to the end of
 *                     the backend's response
 *
 * Durations are the Gateway API's subset of Go durations: one to four
 * `<1-5 digits><h|m|s|ms>` parts ("1h30m", "500ms", "0s"). A zero duration
 * turns that limit off. backendRequest must not exceed a non-zero request.
 * A limit exceeded before the response head was sent answers 504; after it,
 * the client connection is cut (the head cannot be taken back). Either way the
 * backend connection is closed, never pooled half read.
 */
import { join, type Fields } from "./fields.js";
import type { RuleTimeouts } from "./model.js";

const PART = /([0-9]{1,5})(h|ms|m|s)/gy;
const UNIT_MS: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1 };

/** Milliseconds of a Gateway API duration, or undefined when it is not one. */
export function parseDuration(text: string): number | undefined {
  if (!/^([0-9]{1,5}(h|m|s|ms)){1,4}$/.test(text)) return undefined;
  let ms = 0;
  PART.lastIndex = 0;
  for (let m = PART.exec(text); m; m = PART.exec(text)) ms += Number(m[1]) * (UNIT_MS[m[2] ?? ""] ?? 0);
  return ms;
}

/** `rules[i].timeouts`: undefined when absent; a failure names the field. */
export function ruleTimeouts(v: unknown, p: string, f: Fields): RuleTimeouts | undefined {
  if (v === undefined || v === null) return undefined;
  const o = f.obj(v, p);
  f.known(o, p, ["request", "backendRequest"]);
  const one = (k: "request" | "backendRequest"): number | undefined => {
    const s = f.str(o?.[k], join(p, k));
    if (s === undefined) return undefined;
    const ms = parseDuration(s);
    if (ms === undefined)
      f.fail(join(p, k), `"${s}" is not a duration: 1 to 4 parts of up to 5 digits and h, m, s or ms (e.g. 500ms, 1m30s)`); // prettier-ignore
    return ms;
  };
  const requestMs = one("request");
  const backendRequestMs = one("backendRequest");
  if (requestMs && backendRequestMs !== undefined && backendRequestMs > requestMs)
    f.fail(join(p, "backendRequest"), "must not exceed timeouts.request");
  return {
    ...(requestMs !== undefined ? { requestMs } : {}),
    ...(backendRequestMs !== undefined ? { backendRequestMs } : {}),
  };
}

/** setTimeout's longest delay: a longer one fires at once (Node clamps it to 1 ms). 99999h is a valid duration. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The time one backend attempt may take now: the tighter of both limits (undefined: none), at most MAX_TIMER_MS. */
export function attemptLimitMs(
  t: RuleTimeouts | undefined,
  deadline: number | undefined,
  now: number,
): number | undefined {
  const left = deadline === undefined ? undefined : Math.max(1, deadline - now);
  const per = t?.backendRequestMs ? t.backendRequestMs : undefined;
  const limit = left === undefined ? per : per === undefined ? left : Math.min(per, left);
  return limit === undefined ? undefined : Math.min(limit, MAX_TIMER_MS);
}
