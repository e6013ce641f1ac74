/**
 * The L7 part of one side's decision, offline: what the node's proxy would
 * do with the query's request on a port with L7 rules.
 *
 *   LookupResult.l7 + FlowQuery --l7Verdict--> allowed? how denied, header mismatch actions
 *   FlowQuery + one side's actions --afterActions--> the request the next side judges
 */
import {
  applyHeaderActions,
  compileHttpRules,
  compileServerNames,
  fqdnMatches,
  kafkaMatches,
  normalizeName,
  type HeaderAction,
} from "./l7/index.js";
import type { LookupResult } from "./mapstate.js";
import type { DenyHow, FlowQuery } from "./query.js";

/** The query as one side's header actions left its HTTP request. */
export function afterActions(q: FlowQuery, s: { readonly actions?: readonly HeaderAction[] }): FlowQuery {
  if (!s.actions || !q.http) return q;
  return { ...q, http: { ...q.http, headers: applyHeaderActions(q.http.headers ?? {}, s.actions) } };
}

export function l7Verdict(
  l7: NonNullable<Extract<LookupResult, { verdict: "allow" }>["l7"]>,
  q: FlowQuery,
  enforced: boolean,
): { allowed: boolean; how: DenyHow; actions?: readonly HeaderAction[] } {
  const spec = l7.spec;
  // Two parsers claiming one port for one peer: nothing can be enforced correctly, so nothing passes.
  if (l7.conflict) return { allowed: false, how: "drop" };
  // Not in default deny: L7 rules add visibility only (Cilium's newest behaviour, §7).
  if (!enforced || l7.allowAll) return { allowed: true, how: "drop" };
  if (spec.serverNames.length > 0) {
    // No TLS at all (plain bytes, or nothing and then close): no ClientHello,
    // so no server name to admit; the proxy resets the connection.
    if (q.tls === undefined) return { allowed: false, how: "tls-reset" };
    if (!compileServerNames(spec.serverNames)(normalizeName(q.tls.sni)))
      return { allowed: false, how: "tls-reset" };
  }
  switch (spec.parser) {
    case "http":
      if (q.http === undefined) return { allowed: true, how: "http-403" };
      {
        const v = compileHttpRules(spec.http).match(q.http);
        return v.actions
          ? { allowed: v.allowed, how: "http-403", actions: v.actions }
          : { allowed: v.allowed, how: "http-403" };
      }
    case "dns":
      if (q.dnsQuery === undefined) return { allowed: true, how: "dns-refused" };
      return { allowed: spec.dns.some((r) => fqdnMatches(r, q.dnsQuery as string)), how: "dns-refused" };
    case "kafka":
      if (q.kafka === undefined) return { allowed: true, how: "kafka-denied" };
      return { allowed: kafkaMatches(spec.kafka, q.kafka), how: "kafka-denied" };
    case "tls":
      return { allowed: true, how: "tls-reset" };
  }
}
