/**
 * What the kernel (and the node's proxy) did with a query, as a verdict, and
 * how it compares with the expectation: the same rule as the offline
 * `compare` (the verdict must match; on deny, the `how` too when the
 * scenario states one).
 *
 *   probe result + drop / redirect logs --verdictOf--> allow | deny/<how> | harness error
 *     tcp, udp, ping, connect   "ok" = allow
 *     http                      "200" = allow, "403" = deny/http-403
 *     kafka                     "ok" = allow, "denied" (error 29) = deny/kafka-denied
 *                               ("closed" for ApiVersions, which has no error answer)
 *     tls                       "ok" = allow, "reset" = deny/tls-reset
 *     dns                       NOERROR / NXDOMAIN = allow, REFUSED = deny/dns-refused
 *     any                       "timeout" with the kernel's drop log = deny/drop
 *   Anything else (a timeout nothing logged, ECONNREFUSED, SERVFAIL, ...) is a
 *   harness error, never a verdict. A connection the offline engine says is
 *   handed to the proxy must have been redirected by the kernel, and the other
 *   way round.
 */
import type { DenyHow } from "../policy/query.js";
import type { DatapathQueryResult } from "./datapath.js";
import type { Observation } from "./datapath-node.js";
import type { QueryPlan } from "./datapath-plan.js";
import type { QueryResult } from "../policy/scenario/types.js";

type Verdict = { actual: "allow"; what: string } | { actual: "deny"; how: DenyHow; what: string };

export function base(o: QueryResult): Omit<DatapathQueryResult, "outcome"> {
  const { actual, actualHow, pass: _pass, ...rest } = o;
  return {
    ...rest,
    decidedBy: [],
    offline: { verdict: actual, ...(actualHow !== undefined ? { how: actualHow } : {}) },
  };
}

export function skipped(o: QueryResult, reason: string): DatapathQueryResult {
  return { ...base(o), outcome: "skip", skipReason: reason, decidedBy: [`skipped: ${reason}`] };
}

/** A query that could not be run as planned (e.g. its DNS answers did not reach the agent). */
export function harnessFailure(
  o: QueryResult,
  why: string,
  extra: readonly string[] = [],
): DatapathQueryResult {
  return {
    ...base(o),
    outcome: "fail",
    decidedBy: [`kernel: harness error: ${why}`, engineText(o), ...extra],
  };
}

function engineText(o: QueryResult): string {
  const v = o.actual === "deny" && o.actualHow !== undefined ? `deny/${o.actualHow}` : o.actual;
  return `engine: ${v} (${o.decidedBy.join("; ")})`;
}

/** The verdict a probe result stands for, by plan kind; undefined = no verdict (harness error). */
export function verdictOf(
  plan: Pick<QueryPlan, "kind" | "kafka"> & Partial<Pick<QueryPlan, "proxied">>,
  seen: Observation,
): Verdict | undefined {
  const r = seen.result;
  if (r === "timeout" && seen.drop !== undefined) {
    // The gate of mutual authentication (datapath/compile-auth.ts): AUTH_REQUIRED (189).
    if (seen.drop.endsWith(":auth")) return { actual: "deny", how: "auth-required", what: `dropped: authentication required (${seen.drop})` }; // prettier-ignore
    return { actual: "deny", how: "drop", what: `dropped (${seen.drop})` };
  }
  switch (plan.kind) {
    case "tcp":
      if (plan.proxied === "tls" && r === "reset")
        return { actual: "deny", how: "tls-reset", what: "plain bytes instead of a ClientHello: reset" };
      return r === "ok" ? { actual: "allow", what: "answered" } : undefined;
    case "udp":
    case "ping":
      return r === "ok" ? { actual: "allow", what: "answered" } : undefined;
    case "connect":
      return r === "ok" ? { actual: "allow", what: "connected" } : undefined;
    case "http":
      if (r === "200") return { actual: "allow", what: "HTTP 200" };
      return r === "403" ? { actual: "deny", how: "http-403", what: "HTTP 403" } : undefined;
    case "kafka":
      if (r === "ok") return { actual: "allow", what: "Kafka answer without error" };
      if (r === "denied")
        return { actual: "deny", how: "kafka-denied", what: "Kafka TOPIC_AUTHORIZATION_FAILED" };
      return r === "closed" && plan.kafka?.apiKey === 18
        ? { actual: "deny", how: "kafka-denied", what: "Kafka ApiVersions refused: connection closed" }
        : undefined;
    case "tls":
      if (r === "ok") return { actual: "allow", what: "TLS handshake done" };
      return r === "reset" ? { actual: "deny", how: "tls-reset", what: "TLS connection reset" } : undefined;
    case "dns":
      if (/^(NOERROR|NXDOMAIN)\b/.test(r)) return { actual: "allow", what: `DNS ${r}` };
      return r === "REFUSED" ? { actual: "deny", how: "dns-refused", what: "DNS REFUSED" } : undefined;
  }
}

function harnessWhy(r: string, timeoutMs: number): string {
  if (r === "ECONNREFUSED") return "connection refused: the packet got through but nothing listened";
  if (r === "timeout")
    return `no answer within ${timeoutMs} ms and no drop logged: the packet was lost outside the policy`;
  return r;
}

/**
 * Compares what the kernel did with the expectation (see the file comment).
 * `plan` defaults to plain traffic the proxy never handles.
 */
export function observedResult(
  o: QueryResult,
  seen: Observation,
  timeoutMs: number,
  plan: Pick<QueryPlan, "kind" | "kafka" | "proxied"> = { kind: "tcp" },
  extra: readonly string[] = [],
): DatapathQueryResult {
  const engine = engineText(o);
  const observed = seen.result;
  const v = verdictOf(plan, seen);
  if (!v) {
    return {
      ...base(o),
      outcome: "fail",
      observed,
      decidedBy: [`kernel: harness error: ${harnessWhy(observed, timeoutMs)}`, engine, ...extra],
    };
  }
  const how = v.actual === "deny" ? v.how : undefined;
  let pass =
    o.expect === v.actual && (v.actual === "allow" || o.expectHow === undefined || o.expectHow === how);
  let kernel = `kernel: ${v.what}`;
  if (how !== "drop" && seen.redirect !== undefined)
    kernel = `kernel: redirected to the proxy (${seen.redirect}); ${v.what}`;
  if (how !== "drop" && plan.proxied !== undefined && seen.redirect === undefined) {
    pass = false;
    kernel += `; NOT redirected to the proxy, though the engine says the ${plan.proxied} proxy handles it`;
  }
  if (how !== "drop" && plan.proxied === undefined && seen.redirect !== undefined) {
    pass = false;
    kernel += "; the engine says no proxy handles it";
  }
  return {
    ...base(o),
    outcome: pass ? "pass" : "fail",
    actual: v.actual,
    ...(how !== undefined ? { actualHow: how } : {}),
    observed,
    ...(seen.drop !== undefined ? { dropLog: seen.drop } : {}),
    decidedBy: [kernel, engine, ...extra],
  };
}
