/**
 * What the L7 proxies need from the rest of Membrane, and what they give back.
 *
 *   kernel redirect / agent --ConnectionInfo--> proxy --L7PolicyLookup--> {spec, allowAll} | undefined
 *                                               proxy --L7Sink--> L7Event (flows)
 *
 * The proxies own no policy: they ask `L7PolicyLookup` for every connection
 * and every request (so a policy change applies to live keep-alive
 * connections), and `undefined` means "no L7 policy is known for this":
 * the proxy fails closed (resets the connection, refuses the query).
 */
import type { L7Spec } from "../policy/mapstate.js";

export type L7Direction = "ingress" | "egress";
export type L7Proto = "TCP" | "UDP";

/** The key the proxy asks about. */
export interface L7LookupKey {
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly dstPort: number;
  readonly proto: L7Proto;
  readonly direction: L7Direction;
  /** The endpoint whose policy applies (subject of the policy). */
  readonly endpoint: string;
  /** With direction "egress": the destination, when it is an endpoint of this node (its ingress applies too). */
  readonly peerEndpoint?: string;
}

export interface L7LookupResult {
  readonly spec: L7Spec;
  /** An L4 allow shadows the L7 rules: everything passes, still parsed and recorded. */
  readonly allowAll: boolean;
  /**
   * A second policy the same request must also pass: when both ends of a
   * redirected connection have L7 rules (the client's egress and the
   * server's ingress), the proxy applies both, in one hop.
   */
  readonly also?: L7LookupResult;
}

/** Every stage of `r` admits the request (`check` tests one spec's rules). */
export function l7Admits(r: L7LookupResult, check: (spec: L7Spec) => boolean): boolean {
  for (let s: L7LookupResult | undefined = r; s; s = s.also) if (!s.allowAll && !check(s.spec)) return false;
  return true;
}

/** The stages of `r` all use `parser` (a mix is a conflict: fail closed). */
export function l7Parser(r: L7LookupResult, parser: L7Spec["parser"]): boolean {
  for (let s: L7LookupResult | undefined = r; s; s = s.also) if (s.spec.parser !== parser) return false;
  return true;
}

export interface L7PolicyLookup {
  /** undefined => fail closed (reset / refuse). */
  forConnection(key: L7LookupKey): L7LookupResult | undefined;
}

/** What the caller (later: the kernel redirect) knows about an accepted connection. */
export interface ConnectionInfo {
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly direction: L7Direction;
  readonly endpoint: string;
  /** With direction "egress": the destination, when it is an endpoint of this node. */
  readonly peerEndpoint?: string;
  /** Where the client wanted to go before the redirect. */
  readonly originalDst: { readonly host: string; readonly port: number };
  readonly proto: L7Proto;
}

export function lookupKey(info: ConnectionInfo): L7LookupKey {
  return {
    srcIdentity: info.srcIdentity,
    dstIdentity: info.dstIdentity,
    dstPort: info.originalDst.port,
    proto: info.proto,
    direction: info.direction,
    endpoint: info.endpoint,
    ...(info.peerEndpoint !== undefined ? { peerEndpoint: info.peerEndpoint } : {}),
  };
}

/**
 * The connection's policy as it is now (looked up per request: a policy
 * change applies to live connections), if every stage uses `parser`.
 * undefined, which the caller turns into a reset (fail closed), when there
 * is none, the lookup throws, or the stages mix parsers (a conflict).
 */
export function policyFor(
  lookup: L7PolicyLookup,
  info: ConnectionInfo,
  parser: L7Spec["parser"],
): L7LookupResult | undefined {
  let p: L7LookupResult | undefined;
  try {
    p = lookup.forConnection(lookupKey(info));
  } catch {
    return undefined;
  }
  return p && l7Parser(p, parser) ? p : undefined;
}

/**
 * - `forwarded`: allowed and passed on (the outcome is in status / rcode)
 * - `denied`: refused by L7 policy (403, REFUSED, Kafka error, TLS reset)
 * - `error`: malformed input, upstream failure or no policy known (fail closed)
 */
export type L7Verdict = "forwarded" | "denied" | "error";

/**
 * One L7 flow record. Never carries header values, bodies, cookies or
 * answers' payloads other than addresses: flows are shown to operators.
 */
export interface L7Event {
  readonly type: "http" | "dns" | "kafka" | "tls";
  readonly verdict: L7Verdict;
  readonly srcIdentity: number;
  readonly dstIdentity: number;
  readonly endpoint: string;
  readonly direction: L7Direction;
  /** The client's address and the server it asked (DNS: the proxy knows them per query). */
  readonly client?: { readonly address: string; readonly port: number };
  readonly server?: { readonly address: string; readonly port: number };
  /** Transport of the request when it is not TCP's alone (DNS: UDP or TCP). */
  readonly transport?: L7Proto;
  /** Why: the rule index that allowed, or the reason of a denial/error. */
  readonly rule?: number;
  readonly reason?: string;
  // http
  /** Absent = HTTP/1.1. */
  readonly httpVersion?: "HTTP/1.1" | "HTTP/2";
  readonly method?: string;
  /** Normalised path (with query) as forwarded, prefixed by the Host. */
  readonly url?: string;
  readonly status?: number;
  readonly latencyMs?: number;
  /** The W3C trace id of the request's `traceparent` header, when valid (http/trace-context.ts). */
  readonly traceId?: string;
  /** HTTP `headerMatches[].mismatch` actions taken (`LOG x-token`, `ADD x-env: prod`); client values are never logged. */
  readonly headerActions?: readonly string[];
  // dns
  readonly query?: string;
  readonly qtype?: string;
  readonly answers?: readonly string[];
  readonly rcode?: string;
  /** Smallest TTL of the answer's address records (seconds). */
  readonly ttl?: number;
  /** CNAME targets the answer went through. */
  readonly cnames?: readonly string[];
  /** Types of the answer's records (`A`, `CNAME`, ...). */
  readonly rrtypes?: readonly string[];
  // kafka
  readonly apiKey?: number;
  readonly apiVersion?: number;
  readonly topics?: readonly string[];
  readonly correlationId?: number;
  // tls
  readonly sni?: string;
}

export type L7Sink = (event: L7Event) => void;

/** The sink as the proxies call it: a throwing sink loses the event, never the connection. */
export function guardSink(sink: L7Sink): L7Sink {
  return (e) => {
    try {
      sink(e);
    } catch {
      // A flow consumer's bug must not take L7 enforcement down.
    }
  };
}
