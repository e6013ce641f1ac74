/**
 * Messages between the agent and its proxy process (Node's IPC channel, JSON).
 *
 *   agent -> proxy   {type: "snapshot", snapshot}        proxy -> agent  {type: "ready", ports}
 *                    {type: "hosts-full", to, part, ...}                 {type: "ack", version}
 *                    {type: "hosts", from, to, set, del}                 {type: "hosts-ack", to, ok, error?}
 *                    {type: "dns-done", id, ok, until?}                  {type: "l7", event, src, dst}
 *                    {type: "dns-forget", id, pairs?}                    {type: "l7-batch", events: [{event, src, dst}]}
 *                    {type: "identity-of", id, address}                  {type: "dns-answer", id, ...}
 *                                                                        {type: "dns-seen", answers: [...]}
 *                                                                        {type: "dns-forgot", id}
 *                                                                        {type: "identity", id, identity}
 *                                                                        {type: "fatal", message}
 *
 * The snapshot carries the L7 rules, the local endpoints and the ipcache's
 * prefixes; the exact addresses (tens of thousands in a cluster) travel
 * apart, as a full table once and then as deltas (hosts-wire.ts).
 * `identity-of` asks which identity the proxy gives an address (diagnostics).
 *
 * A DNS answer is held by the proxy until the agent says `dns-done`: by then
 * the answer's addresses are in the kernel's ipcache (toFQDNs works on the
 * client's first connection). `until` says how long the agent holds every
 * address of that answer: a later answer within it is released at once and
 * told in passing (`dns-seen`); `dns-forget` withdraws that before the agent
 * takes addresses out of the kernel (dns-answers.ts). Both sides check the shape of what they
 * receive; a malformed message is dropped, never trusted. The agent side
 * rebuilds what the (unprivileged) proxy sends from known, bounded fields
 * (validate.ts).
 */
import type { L7Event } from "../types.js";
import type { Addr, ProxySnapshot } from "./table.js";
import { hostsDeltaFrom, hostsFullFrom, type HostsDelta, type HostsFull } from "./hosts-wire.js";
import { addrFrom, dnsAnswerFrom, l7EventFrom } from "./validate.js";
import { lbServicesFrom } from "../lb/services.js";

export interface ProxyConfig {
  /** Node addresses the listeners bind (the DNAT targets). */
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly l7Port: number;
  readonly dnsPort: number;
  /** User the proxy runs as once its sockets are bound (absent: stays root). */
  readonly uid?: number;
  /** Directory of TLS secrets (`<dir>/<namespace>/<name>/tls.crt|tls.key|ca.crt`). */
  readonly secretsDir?: string;
}

export type ToProxy =
  | { readonly type: "snapshot"; readonly snapshot: ProxySnapshot }
  | { readonly type: "dns-done"; readonly id: number; readonly ok: boolean; readonly until?: number }
  /** These (name, ip) pairs (absent: all) are no longer held; answered with dns-forgot. */
  | { readonly type: "dns-forget"; readonly id: number; readonly pairs?: readonly DnsForgetPair[] }
  | HostsDelta
  | HostsFull
  | { readonly type: "identity-of"; readonly id: number; readonly address: string };

export type FromProxy =
  | { readonly type: "ready" }
  | { readonly type: "ack"; readonly version: number }
  | { readonly type: "hosts-ack"; readonly to: number; readonly ok: boolean; readonly error?: string }
  | { readonly type: "identity"; readonly id: number; readonly identity: number }
  | { readonly type: "l7"; readonly event: L7Event; readonly src: Addr; readonly dst: Addr }
  /** The events of one turn of the proxy's event loop in one message (one IPC write, not one per request). */
  | { readonly type: "l7-batch"; readonly events: readonly L7Flow[] }
  | {
      readonly type: "dns-answer";
      readonly id: number;
      readonly endpoint: string;
      readonly name: string;
      readonly ips: readonly string[];
      readonly ttl: number;
    }
  /** Answers released because the agent held their addresses: it extends their life as for dns-answer. */
  | { readonly type: "dns-seen"; readonly answers: readonly DnsSeen[] }
  | { readonly type: "dns-forgot"; readonly id: number }
  | { readonly type: "fatal"; readonly message: string };

export interface DnsSeen {
  readonly endpoint: string;
  readonly name: string;
  readonly ips: readonly string[];
  readonly ttl: number;
}

export interface DnsForgetPair {
  readonly name: string;
  readonly ip: string;
}

/** The most answers one dns-seen carries (a longer one is refused whole). */
export const MAX_SEEN = 256;

/** The most pairs one dns-forget carries (the agent sends "all" past it). */
export const MAX_FORGET_PAIRS = 4096;

/** One L7 event with the connection's ends. */
export interface L7Flow {
  readonly event: L7Event;
  readonly src: Addr;
  readonly dst: Addr;
}

/** The most events one batch carries (the proxy flushes before; a longer one is refused whole). */
export const MAX_L7_BATCH = 512;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null;
const isInt = (v: unknown, max: number): v is number =>
  typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= max;

/**
 * Why the agent dropped what the proxy sent: a fixed word per check, the counters' keys (what
 * `membrane get status` and /metrics show; the gateway's are in gateway/from-gateway.ts). Nothing
 * the proxy sent is ever part of a reason.
 */
export type ProxyDrop = "message" | "l7 batch" | "l7 event" | "address" | "dns answer";

/**
 * The message rebuilt from what the proxy sent, if well-formed; else undefined. `drop` is told
 * each thing dropped: the whole message, or one event or answer of a batch (the rest is kept).
 */
export function fromProxy(
  m: unknown,
  drop: (why: ProxyDrop) => void = () => undefined,
): FromProxy | undefined {
  const r = rebuild(m, drop);
  if (typeof r !== "string") return r;
  drop(r);
  return undefined;
}

/** One event with the connection's ends, or why not (an L7 event rebuilt by validate.ts; ends by addrFrom). */
function flowFrom(e: unknown): L7Flow | ProxyDrop {
  if (!isObj(e)) return "l7 event";
  const event = l7EventFrom(e.event);
  if (!event) return "l7 event";
  const src = addrFrom(e.src);
  const dst = addrFrom(e.dst);
  return src && dst ? { event, src, dst } : "address";
}

/** fromProxy's work: the message, or why it is dropped whole (`drop` hears of the parts of a batch). */
function rebuild(m: unknown, drop: (why: ProxyDrop) => void): FromProxy | ProxyDrop {
  if (!isObj(m)) return "message";
  switch (m.type) {
    case "ready":
      return { type: "ready" };
    case "ack":
      return typeof m.version === "number" ? { type: "ack", version: m.version } : "message";
    case "hosts-ack":
      if (!isInt(m.to, Number.MAX_SAFE_INTEGER) || typeof m.ok !== "boolean") return "message";
      // Why the proxy refused the content (hosts-wire.ts): shown in the agent's log, so bounded.
      return typeof m.error === "string" && !m.ok
        ? { type: "hosts-ack", to: m.to, ok: false, error: m.error.slice(0, 300) }
        : { type: "hosts-ack", to: m.to, ok: m.ok };
    case "identity":
      return isInt(m.id, Number.MAX_SAFE_INTEGER) && isInt(m.identity, 0xffffffff)
        ? { type: "identity", id: m.id, identity: m.identity }
        : "message";
    case "l7": {
      const f = flowFrom(m);
      return typeof f === "string" ? f : { type: "l7", ...f };
    }
    case "l7-batch": {
      if (!Array.isArray(m.events) || m.events.length > MAX_L7_BATCH) return "l7 batch";
      // Each event is rebuilt as a single one would be; a malformed one is dropped, not the others.
      const events: L7Flow[] = [];
      for (const e of m.events as unknown[]) {
        const f = flowFrom(e);
        if (typeof f === "string") drop(f);
        else events.push(f);
      }
      return { type: "l7-batch", events };
    }
    case "dns-answer": {
      const a = dnsAnswerFrom(m);
      return a ? { type: "dns-answer", ...a } : "dns answer";
    }
    case "dns-seen": {
      if (!Array.isArray(m.answers) || m.answers.length > MAX_SEEN) return "message";
      // Each answer rebuilt as a dns-answer would be; a malformed one is dropped, not the others.
      const answers: DnsSeen[] = [];
      for (const a of m.answers as unknown[]) {
        const r = isObj(a) ? dnsAnswerFrom({ ...a, id: 0 }) : undefined;
        if (r) answers.push({ endpoint: r.endpoint, name: r.name, ips: r.ips, ttl: r.ttl });
        else drop("dns answer");
      }
      return { type: "dns-seen", answers };
    }
    case "dns-forgot":
      return isInt(m.id, Number.MAX_SAFE_INTEGER) ? { type: "dns-forgot", id: m.id } : "message";
    case "fatal":
      return typeof m.message === "string" ? { type: "fatal", message: m.message.slice(0, 1000) } : "message";
    default:
      return "message";
  }
}

/** The message if it has the shape of one the agent sends; else undefined. */
export function toProxy(m: unknown): ToProxy | undefined {
  if (!isObj(m)) return undefined;
  if (m.type === "dns-done") {
    if (typeof m.id !== "number" || typeof m.ok !== "boolean") return undefined;
    if (m.until === undefined) return { type: "dns-done", id: m.id, ok: m.ok };
    return isInt(m.until, Number.MAX_SAFE_INTEGER) ? { type: "dns-done", id: m.id, ok: m.ok, until: m.until } : undefined; // prettier-ignore
  }
  if (m.type === "dns-forget") {
    if (!isInt(m.id, Number.MAX_SAFE_INTEGER)) return undefined;
    if (m.pairs === undefined) return { type: "dns-forget", id: m.id };
    if (!Array.isArray(m.pairs) || m.pairs.length > MAX_FORGET_PAIRS) return undefined;
    const pairs = (m.pairs as unknown[]).filter(
      (p): p is DnsForgetPair => isObj(p) && typeof p.name === "string" && typeof p.ip === "string",
    );
    // A pair we cannot read: forget everything rather than keep what the agent withdrew.
    return pairs.length === m.pairs.length ? { type: "dns-forget", id: m.id, pairs } : { type: "dns-forget", id: m.id }; // prettier-ignore
  }
  if (m.type === "hosts") return hostsDeltaFrom(m);
  if (m.type === "hosts-full") return hostsFullFrom(m);
  if (m.type === "identity-of")
    return isInt(m.id, Number.MAX_SAFE_INTEGER) && typeof m.address === "string" && m.address.length <= 64
      ? { type: "identity-of", id: m.id, address: m.address }
      : undefined;
  if (m.type === "snapshot" && isObj(m.snapshot)) {
    const s = m.snapshot;
    if (
      typeof s.version === "number" &&
      Array.isArray(s.ipcache) &&
      Array.isArray(s.endpoints) &&
      Array.isArray(s.l7) &&
      (s.lb === undefined || lbServicesFrom(s.lb) !== undefined)
    )
      return m as ToProxy;
  }
  return undefined;
}
