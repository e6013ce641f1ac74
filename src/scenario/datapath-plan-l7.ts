/**
 * The L7 side of datapath plans: which request a query makes (HTTP, Kafka,
 * TLS handshake, DNS query, or a bare connection to a port the proxy
 * handles), what the offline engine says the kernel hands to the proxy, and
 * which server each destination port runs.
 *
 *   query + offline Decision --l7Part--> L7 fields | {skip} | undefined (plain traffic)
 *   http plan without a Host --hostChecked--> skip when the Host a client sends changes the verdict
 *   all plans --assignListeners--> one server role per destination port; plain TCP to an
 *                                  L7 server's port becomes a bare connect
 */
import { kafkaApiKeyNumber } from "../policy/l7/kafka.js";
import type { Decision, DirectionDecision, FlowQuery } from "../policy/query.js";
import type { PlanKind, QueryPlan, Side } from "./datapath-plan.js";
import type { ScenarioQuery } from "../policy/scenario/types.js";

/** The server a destination port runs: an echo server, or an L7 one. */
export type ListenerRole = "echo" | "http" | "kafka" | "tls" | "dns";
export type L7Parser = "http" | "kafka" | "tls" | "dns";

export interface KafkaPlan {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly topic?: string;
  /** Absent: the request carries a null client id, as the query names none. */
  readonly clientID?: string;
}

export interface L7Fields {
  /** connect: the server the destination port runs for the other queries. */
  readonly serve?: ListenerRole;
  /** http: the request; headers include Host. */
  readonly http?: {
    readonly method: string;
    readonly path: string;
    readonly headers: Readonly<Record<string, string>>;
  };
  readonly kafka?: KafkaPlan;
  /** tls: the server name of the ClientHello. */
  readonly sni?: string;
  /** dns: the name asked (A), over UDP or TCP. */
  readonly dns?: { readonly name: string; readonly tcp: boolean };
  /** The L7 parser the offline engine says the kernel hands this connection to. */
  readonly proxied?: L7Parser;
}

/** Kafka requests the probe client and broker speak: key -> [default version, highest the proxy reads]. */
const KAFKA_VERSIONS: ReadonlyMap<number, readonly [number, number]> = new Map([
  [0, [3, 8]],
  [1, [4, 11]],
  [3, [1, 8]],
  [18, [0, 3]],
]);

const parserOf = (x: DirectionDecision): L7Parser | undefined => x.l7?.parser;
const l4Denied = (x: DirectionDecision): boolean => x.verdict === "deny" && x.reason !== "l7-denied";

/**
 * The L7 fields and kind of a query's plan; undefined for plain traffic no
 * proxy handles; a skip when the request cannot be made or judged faithfully.
 */
export function l7Part(
  q: ScenarioQuery,
  d: Decision,
): (L7Fields & { readonly kind: PlanKind }) | { skip: string } | undefined {
  const dirs = [d.egress, d.ingress];
  if (d.how === "drop" && dirs.some((x) => x.reason === "l7-denied")) {
    return {
      skip:
        "two L7 parsers claim this port for this peer: the kernel hands the connection to the proxy, " +
        "which resets it, where the offline engine says drop",
    };
  }
  const parsers = [...new Set(dirs.flatMap((x) => parserOf(x) ?? []))];
  if (parsers.length > 1) {
    return { skip: `the two directions hand the connection to different L7 parsers (${parsers.join(", ")})` };
  }
  // Redirected only when no direction drops the connection at L3/L4 first.
  const proxied = dirs.some(l4Denied) ? undefined : parsers[0];
  const p = proxied !== undefined ? { proxied } : {};
  const want = requestKind(q);
  if (want === undefined) {
    if (proxied === undefined) return undefined;
    if (q.proto === "UDP") {
      return {
        skip:
          "a plain UDP datagram to a port the DNS proxy handles is not a DNS query: the proxy drops it, " +
          "where the offline engine allows it (no request to judge)",
      };
    }
    // On a serverNames port the proxy waits for a ClientHello: plain bytes
    // instead must be reset (a bare connect would only show the proxy accepting).
    if (proxied === "tls") return { kind: "tcp", serve: proxied, ...p };
    return { kind: "connect", serve: proxied, ...p };
  }
  if (want === "tls-in-http") {
    return {
      skip: "HTTP inside TLS needs the proxy to terminate TLS (terminatingTLS secrets), which this mode does not set up",
    };
  }
  if (proxied !== undefined && proxied !== want) {
    return {
      skip: `the query makes a ${want} request, but the L7 rules of this port are ${proxied}: the ${proxied} proxy refuses those bytes, which the offline engine does not judge`,
    };
  }
  switch (want) {
    case "http": {
      const h = q.http ?? { method: "GET", path: "/" };
      const headers = { ...(h.headers ?? {}), ...(h.host !== undefined ? { Host: h.host } : {}) };
      return { kind: "http", http: { method: h.method, path: h.path, headers }, ...p };
    }
    case "kafka":
      return kafkaPart(q, p);
    case "tls":
      return { kind: "tls", sni: q.tls?.sni ?? "", ...p };
    case "dns":
      return { kind: "dns", dns: { name: q.dnsQuery ?? "", tcp: q.proto === "TCP" }, ...p };
  }
}

function requestKind(q: ScenarioQuery): L7Parser | "tls-in-http" | undefined {
  if (q.kafka) return "kafka";
  if (q.dnsQuery !== undefined) return "dns";
  if (q.tls && q.http) return "tls-in-http";
  if (q.tls) return "tls";
  if (q.http) return "http";
  return undefined;
}

function kafkaPart(
  q: ScenarioQuery,
  p: { proxied?: L7Parser },
): (L7Fields & { readonly kind: PlanKind }) | { skip: string } {
  const k = q.kafka ?? { apiKey: "produce" };
  const apiKey = kafkaApiKeyNumber(k.apiKey);
  const versions = apiKey === undefined ? undefined : KAFKA_VERSIONS.get(apiKey);
  if (apiKey === undefined || versions === undefined) {
    return {
      skip: `the probe speaks Kafka produce, fetch, metadata and apiversions, not ${String(k.apiKey)}`,
    };
  }
  const apiVersion = k.apiVersion ?? versions[0];
  if (apiVersion > versions[1]) {
    return {
      skip: `Kafka ${String(k.apiKey)} version ${apiVersion}: the probe and the proxy read up to ${versions[1]}`,
    };
  }
  return {
    kind: "kafka",
    kafka: {
      apiKey,
      apiVersion,
      ...(k.topic !== undefined ? { topic: k.topic } : {}),
      ...(k.clientID !== undefined ? { clientID: k.clientID } : {}),
    },
    ...p,
  };
}

/**
 * A query that names no Host is sent with the one a client would send; when the
 * offline verdict changes with that Host, the run would judge another request: skip.
 */
export function hostChecked(
  q: ScenarioQuery,
  plan: QueryPlan | { skip: string },
  flow: FlowQuery,
  d: Decision,
  decide: (f: FlowQuery) => Decision,
): QueryPlan | { skip: string } {
  if ("skip" in plan || plan.http === undefined || !q.http || q.http.host !== undefined) return plan;
  if (Object.keys(q.http.headers ?? {}).some((h) => h.toLowerCase() === "host")) return plan;
  const host = plan.http.headers.Host ?? "";
  const d2 = decide({ ...flow, http: { ...q.http, host } });
  if (d2.verdict === d.verdict && d2.how === d.how) return plan;
  return {
    skip: `the verdict depends on the Host header, which the query does not give (an HTTP/1.1 request carries one: "Host: ${host}")`,
  };
}

/** The Host header a client sends when the query names no host (as curl: no port for 80). */
export function hostHeader(address: string, family: 4 | 6, port: number): string {
  const host = family === 6 ? `[${address}]` : address;
  return port === 80 ? host : `${host}:${port}`;
}

const sideKey = (s: Side): string => (s.kind === "endpoint" ? s.key : s.kind === "host" ? "host" : s.ip);

/** The server a plan needs at its destination: [transport, role], or undefined (ping). */
export function listenerFor(p: QueryPlan): ["tcp" | "udp", ListenerRole] | undefined {
  switch (p.kind) {
    case "ping":
      return undefined;
    case "tcp":
      return ["tcp", p.serve ?? "echo"];
    case "udp":
      return ["udp", "echo"];
    case "connect":
      return ["tcp", p.serve ?? "echo"];
    case "dns":
      return [p.dns?.tcp ? "tcp" : "udp", "dns"];
    default:
      return ["tcp", p.kind];
  }
}

const isL7 = (r: ListenerRole): boolean => r !== "echo";

/**
 * One server per destination port: the first L7 request claims it; another
 * L7 protocol on the same port is skipped; plain TCP to an L7 server's port
 * becomes a bare connect (the handshake is the L3/L4 verdict), except on a
 * serverNames port, where plain bytes must be reset by the proxy; plain UDP to
 * a resolver is echoed by it. `resolvers`: sides that answer DNS on UDP/53
 * for the DNS answers fed through the proxy.
 */
export function assignListeners(
  plans: readonly (QueryPlan | { skip: string })[],
  resolvers: readonly Side[] = [],
): (QueryPlan | { skip: string })[] {
  const roles = new Map<string, ListenerRole>();
  for (const r of resolvers) roles.set(`${sideKey(r)}|udp/53`, "dns");
  const key = (p: QueryPlan, t: string): string => `${sideKey(p.to)}|${t}/${p.port ?? 0}`;
  const out = plans.map((p) => {
    if ("skip" in p) return p;
    const n = listenerFor(p);
    if (!n || !isL7(n[1]) || p.kind === "connect") return p;
    const k = key(p, n[0]);
    const have = roles.get(k);
    if (have !== undefined && have !== n[1]) {
      return {
        skip: `the destination's ${n[0].toUpperCase()}/${p.port ?? 0} already serves ${have} for another query of this scenario`,
      };
    }
    roles.set(k, n[1]);
    return p;
  });
  // A bare connection to a proxied port needs no particular server, but the port gets one.
  for (const p of out) {
    if (!("skip" in p) && p.kind === "connect" && !roles.has(key(p, "tcp")))
      roles.set(key(p, "tcp"), p.serve ?? "echo");
  }
  return out.map((p) => {
    if ("skip" in p || (p.kind !== "tcp" && p.kind !== "connect")) return p;
    // Plain bytes on a serverNames port stay plain bytes: the proxy must reset them.
    if (p.kind === "tcp" && p.proxied === "tls") return p;
    const have = roles.get(key(p, "tcp"));
    return have !== undefined && isL7(have) ? { ...p, kind: "connect", serve: have } : p;
  });
}
