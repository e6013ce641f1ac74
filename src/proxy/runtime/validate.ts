/**
 * What the agent accepts from the proxy process. The proxy parses hostile
 * bytes and runs without root; the agent runs as root: a compromised proxy
 * must not be able to crash the agent or smuggle fields into flows. Every
 * message is rebuilt from known fields with their types and bounds checked
 * (unknown fields dropped), never cast. The gateway process's events
 * (gateway/from-gateway.ts) are checked with the same pieces.
 */
import { isAddress, isAddrPort } from "../../abi/addr-port.js";
import type { L7Event } from "../types.js";
import type { Addr } from "./table.js";

/** The longest free text kept in an event (a method, URL, reason...). */
export const MAX_TEXT = 4096;
const MAX_LIST = 256;

export type Obj = Record<string, unknown>;
export const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
export const text = (v: unknown, max = MAX_TEXT): v is string => typeof v === "string" && v.length <= max;
export const int = (v: unknown, lo: number, hi: number): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= lo && v <= hi;
/** A request's latency in milliseconds: finite and not negative. */
export const isLatency = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;
const textList = (v: unknown, max = MAX_TEXT): v is string[] =>
  Array.isArray(v) && v.length <= MAX_LIST && v.every((x) => text(x, max));
const addressList = (v: unknown): v is string[] => Array.isArray(v) && v.length <= MAX_LIST && v.every(isAddress); // prettier-ignore

/**
 * One end of a connection as the process read it from its socket: an address and port (the
 * shared guard, abi/addr-port.ts), or the address "" when it had none to give: a socket reset
 * before the process asked (`remoteAddress ?? ""`: proxy/runtime/main.ts, the gateway's exchange.ts
 * and h2-stream.ts) or a DNS event without its ends (main.ts). Bytes sent before a reset are still
 * judged, so that request is still a flow (l7flow.ts shows no IP for ""). Undefined when malformed.
 */
export function addrFrom(v: unknown): Addr | undefined {
  if (isAddrPort(v)) return { address: v.address, port: v.port };
  return isObj(v) && v.address === "" && int(v.port, 0, 65535) ? { address: "", port: v.port } : undefined;
}

const TYPES = new Set(["http", "dns", "kafka", "tls"]);
const VERDICTS = new Set(["forwarded", "denied", "error"]);
const DIRECTIONS = new Set(["ingress", "egress"]);

/** An L7 event rebuilt from its known fields; undefined when a required field is missing or malformed. */
export function l7EventFrom(v: unknown): L7Event | undefined {
  if (!isObj(v)) return undefined;
  const { type, verdict, direction } = v;
  if (typeof type !== "string" || !TYPES.has(type)) return undefined;
  if (typeof verdict !== "string" || !VERDICTS.has(verdict)) return undefined;
  if (typeof direction !== "string" || !DIRECTIONS.has(direction)) return undefined;
  if (!int(v.srcIdentity, 0, 0xffffffff) || !int(v.dstIdentity, 0, 0xffffffff) || !text(v.endpoint, 512))
    return undefined;
  const out: Record<string, unknown> = {
    type,
    verdict,
    direction,
    srcIdentity: v.srcIdentity,
    dstIdentity: v.dstIdentity,
    endpoint: v.endpoint,
  };
  // Optional fields: kept only when well-formed.
  for (const k of ["reason", "method", "url", "query", "qtype", "rcode", "sni"] as const) {
    if (text(v[k])) out[k] = v[k];
  }
  for (const k of ["rule", "status", "apiKey", "correlationId"] as const) {
    if (int(v[k], -0x80000000, 0xffffffff)) out[k] = v[k];
  }
  if (int(v.apiVersion, 0, 0x7fff)) out.apiVersion = v.apiVersion; // Kafka's int16, never negative (kafka/request.ts)
  if (isLatency(v.latencyMs)) out.latencyMs = v.latencyMs;
  // A DNS answer's addresses (Hubble's dns.ips): addresses only, as the proxy's parser prints them.
  if (addressList(v.answers)) out.answers = [...v.answers];
  if (int(v.ttl, 0, 0x7fffffff)) out.ttl = v.ttl;
  if (textList(v.cnames, 255)) out.cnames = [...v.cnames];
  if (textList(v.rrtypes, 16)) out.rrtypes = [...v.rrtypes]; // "A", "AAAA", "TYPE65280"...
  if (textList(v.topics, 255)) out.topics = [...v.topics];
  // headerMatches mismatch actions the proxy applied (policy text, never the client's values).
  if (textList(v.headerActions, 512)) out.headerActions = [...v.headerActions];
  if (typeof v.traceId === "string" && /^[0-9a-f]{32}$/.test(v.traceId)) out.traceId = v.traceId;
  if (v.httpVersion === "HTTP/1.1" || v.httpVersion === "HTTP/2") out.httpVersion = v.httpVersion;
  if (v.transport === "TCP" || v.transport === "UDP") out.transport = v.transport;
  return out as unknown as L7Event;
}

export interface DnsAnswerMsg {
  readonly id: number;
  readonly endpoint: string;
  readonly name: string;
  readonly ips: readonly string[];
  readonly ttl: number;
}

/**
 * A DNS answer to enforce; bounded: a name of at most 255, at most 256 addresses, a finite TTL.
 * Each of `ips` must be an address (the proxy prints them from A/AAAA records, dns/message.ts):
 * they become FQDN identities in policy and the kernel. One that is not refuses the answer whole:
 * the proxy then holds it until its deadline and answers SERVFAIL (fail closed), never half of it.
 * `endpoint` (namespace/name) and `name` (the DNS name) are names, not addresses.
 */
export function dnsAnswerFrom(v: Obj): DnsAnswerMsg | undefined {
  if (!int(v.id, 0, Number.MAX_SAFE_INTEGER) || !text(v.endpoint, 512) || !text(v.name, 255))
    return undefined;
  if (!addressList(v.ips) || !int(v.ttl, 0, 0x7fffffff)) return undefined;
  return { id: v.id, endpoint: v.endpoint, name: v.name, ips: [...v.ips], ttl: v.ttl };
}
