/**
 * Pure L7 matchers: what the policy engine uses to answer L7 queries offline
 * and what the proxy runs per request. Compile once, match many; no I/O.
 *
 *   DnsRule[] / toFQDNs / serverNames --fqdn.ts-->  (name) => boolean
 *   HttpRule[]                        --http.ts-->  HttpMatcher.match(request) -> {allowed, ruleIndex?}
 *   KafkaRule[]                       --kafka.ts--> kafkaMatches(rules, request) -> boolean
 */
export * from "./fqdn.js";
export * from "./http.js";
export * from "./kafka.js";
