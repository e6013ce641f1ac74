/**
 * What the agent accepts from the proxy process. The proxy parses hostile
 * bytes and runs without root; the agent runs as root: a compromised proxy
 * must not be able to crash the agent or smuggle fields into flows. Every
 * message is rebuilt from known fields with their types and bounds checked
 * (unknown fields dropped), never cast. The gateway process's events
 * (gateway/from-gateway.ts) are checked with the same pieces.
 */
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

/** An address and port; undefined when malformed. */
export function addrFrom(v: unknown): Addr | undefined {
  if (!isObj(v) || !text(v.address, 64) || !int(v.port, 0, 65535)) return undefined;
  return { address: v.address, port: v.port };
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
  if (isLatency(v.latencyMs)) out.latencyMs = v.latencyMs;
  if (textList(v.answers, 64)) out.answers = [...v.answers];
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

/** A DNS answer to enforce; bounded: a name of at most 255, at most 256 addresses, a finite TTL. */
export function dnsAnswerFrom(v: Obj): DnsAnswerMsg | undefined {
  if (!int(v.id, 0, Number.MAX_SAFE_INTEGER) || !text(v.endpoint, 512) || !text(v.name, 255))
    return undefined;
  if (!textList(v.ips, 45) || !int(v.ttl, 0, 0x7fffffff)) return undefined;
  return { id: v.id, endpoint: v.endpoint, name: v.name, ips: [...v.ips], ttl: v.ttl };
}
