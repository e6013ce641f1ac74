/**
 * The proxy's L7 events -> flows, in Hubble's shape (Type L7, event type 129).
 *
 *   L7Event {type http, verdict denied, method PUT, url, status 403}
 *     --> Flow {verdict DROPPED, Type L7, l7: {type REQUEST, http: {code 403, method, url}}, is_reply false}
 *   L7Event {type http, verdict forwarded, method GET, url, status 200, latency}
 *     --> Flow {verdict FORWARDED, l7: {type RESPONSE, ...}, is_reply true, source = the server, destination = the client}
 *
 * As Hubble: a reply (a forwarded request's HTTP status, a DNS answer) is a
 * RESPONSE record going from the server to the client; a request the proxy
 * denied never reached the server and is a REQUEST record.
 *
 * Verdicts: forwarded -> FORWARDED, denied -> DROPPED (drop_reason_desc
 * POLICY_DENIED: no L7 rule allows it), error -> ERROR (malformed input,
 * upstream failure, no policy known: the proxy failed closed). Header
 * values and bodies never reach an L7Event, so they never reach a flow.
 */
import { randomUUID } from "node:crypto";
import { kafkaApiKeyName } from "../policy/l7/kafka.js";
import type { L7Event } from "../proxy/types.js";
import { isoTime } from "./enrich.js";
import type { FlowLookup } from "./enrich.js";
import { DROP_REASONS, EVENT_TYPE, type Endpoint, type Flow, type Layer7 } from "./flow.js";

export interface L7Addrs {
  readonly src: { readonly address: string; readonly port: number };
  readonly dst: { readonly address: string; readonly port: number };
}

const RCODES: Readonly<Record<string, number>> = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
};

function side(lookup: FlowLookup, address: string, identity: number): Endpoint {
  const ep = address === "" ? undefined : lookup.endpointByIp?.(address);
  if (ep)
    return {
      ID: ep.id,
      identity: ep.identity,
      namespace: ep.namespace,
      labels: ep.labels as string[],
      pod_name: ep.name,
    };
  const labels = lookup.identityById(identity)?.labels;
  return labels === undefined ? { identity } : { identity, labels: labels as string[] };
}

/** Hubble's source_names / destination_names: what the DNS proxy learned for each address. */
function names(lookup: FlowLookup, a: L7Addrs): Pick<Flow, "source_names" | "destination_names"> {
  const src = a.src.address === "" ? undefined : lookup.namesOfIp?.(a.src.address);
  const dst = a.dst.address === "" ? undefined : lookup.namesOfIp?.(a.dst.address);
  return {
    ...(src !== undefined ? { source_names: [...src] } : {}),
    ...(dst !== undefined ? { destination_names: [...dst] } : {}),
  };
}

function layer7(e: L7Event): { l7: Layer7; summary: string; reply: boolean } {
  const latency = e.latencyMs === undefined ? {} : { latency_ns: Math.round(e.latencyMs * 1e6) };
  switch (e.type) {
    case "http": {
      const http = {
        ...(e.status !== undefined ? { code: e.status } : {}),
        ...(e.method !== undefined ? { method: e.method } : {}),
        ...(e.url !== undefined ? { url: e.url } : {}),
        protocol: e.httpVersion ?? "HTTP/1.1",
      };
      const status = e.status === undefined ? "" : ` => ${e.status}`;
      const acts = e.headerActions?.length ? ` (header mismatch: ${e.headerActions.join("; ")})` : "";
      // A request the proxy denied never reached the server: Hubble's REQUEST record (the
      // proxy's own 403 is not a reply of the server). A forwarded one with its status: the RESPONSE.
      const reply = e.status !== undefined && e.verdict === "forwarded";
      return {
        l7: { type: reply ? "RESPONSE" : "REQUEST", ...latency, http },
        summary: `${e.method ?? "?"} ${e.url ?? ""}${status}${acts}`,
        reply,
      };
    }
    case "dns": {
      const rcode = e.rcode === undefined ? undefined : RCODES[e.rcode];
      const dns = {
        query: e.query ?? "",
        ...(e.answers !== undefined ? { ips: [...e.answers] } : {}),
        ...(e.ttl !== undefined ? { ttl: e.ttl } : {}),
        ...(e.cnames?.length ? { cnames: [...e.cnames] } : {}),
        // Every DNS flow comes from the DNS proxy (Hubble: "proxy"; Cilium's SDP would say "sdp").
        observation_source: "proxy",
        ...(rcode !== undefined ? { rcode } : {}),
        ...(e.qtype !== undefined ? { qtypes: [e.qtype] } : {}),
        ...(e.rrtypes?.length ? { rrtypes: [...e.rrtypes] } : {}),
      };
      const reply = e.rcode !== undefined && e.verdict === "forwarded";
      return {
        reply,
        l7: { type: reply ? "RESPONSE" : "REQUEST", ...latency, dns },
        summary: `DNS ${e.qtype ?? "?"} ${e.query ?? ""}${e.rcode ? ` ${e.rcode}` : ""}${e.answers?.length ? ` ${e.answers.join(",")}` : ""}`,
      };
    }
    case "kafka": {
      const api = e.apiKey === undefined ? undefined : (kafkaApiKeyName(e.apiKey) ?? String(e.apiKey));
      const kafka = {
        ...(e.apiVersion !== undefined ? { api_version: e.apiVersion } : {}),
        ...(api !== undefined ? { api_key: api } : {}),
        ...(e.correlationId !== undefined ? { correlation_id: e.correlationId } : {}),
        ...(e.topics?.length ? { topic: e.topics.join(",") } : {}),
        ...(e.verdict === "denied" ? { error_code: 29 } : {}),
      };
      return {
        reply: false,
        l7: { type: "REQUEST", ...latency, kafka },
        summary: `Kafka ${api ?? "?"}${e.topics?.length ? ` topic ${e.topics.join(",")}` : ""}`,
      };
    }
    case "tls":
      return { l7: { type: "REQUEST", ...latency }, summary: `TLS SNI ${e.sni ?? "(none)"}`, reply: false };
  }
}

/** One flow for one proxy event. */
export function l7Flow(
  e: L7Event,
  request: L7Addrs,
  lookup: FlowLookup,
  nodeName?: string,
  nodeLabels?: readonly string[],
): Flow {
  const { l7, summary, reply } = layer7(e);
  // A reply goes from the server to the client (Hubble swaps the sides of RESPONSE records).
  const addrs = reply ? { src: request.dst, dst: request.src } : request;
  const ids = reply ? { src: e.dstIdentity, dst: e.srcIdentity } : { src: e.srcIdentity, dst: e.dstIdentity };
  const verdict = e.verdict === "forwarded" ? "FORWARDED" : e.verdict === "denied" ? "DROPPED" : "ERROR";
  const flow: Flow = {
    time: isoTime(Date.now()),
    uuid: randomUUID(),
    verdict,
    ...(verdict === "DROPPED"
      ? { drop_reason: DROP_REASONS.POLICY_DENIED.code, drop_reason_desc: "POLICY_DENIED" as const }
      : {}),
    ...(addrs.src.address !== "" && addrs.dst.address !== ""
      ? {
          IP: {
            source: addrs.src.address,
            destination: addrs.dst.address,
            ipVersion: addrs.src.address.includes(":") ? ("IPv6" as const) : ("IPv4" as const),
          },
          l4:
            e.transport === "UDP"
              ? { UDP: { source_port: addrs.src.port, destination_port: addrs.dst.port } }
              : { TCP: { source_port: addrs.src.port, destination_port: addrs.dst.port } },
        }
      : {}),
    source: side(lookup, addrs.src.address, ids.src),
    destination: side(lookup, addrs.dst.address, ids.dst),
    Type: "L7",
    ...(nodeName !== undefined ? { node_name: nodeName } : {}),
    ...names(lookup, addrs),
    l7,
    event_type: { type: EVENT_TYPE.l7 },
    traffic_direction: e.direction === "ingress" ? "INGRESS" : "EGRESS",
    is_reply: reply,
    Summary: summary,
    ...(e.traceId !== undefined ? { trace_context: { parent: { trace_id: e.traceId } } } : {}),
    ...(nodeLabels?.length ? { node_labels: [...nodeLabels] } : {}),
    ...(e.reason !== undefined && verdict !== "FORWARDED" ? { drop_reason_detail: e.reason } : {}),
  };
  return flow;
}
