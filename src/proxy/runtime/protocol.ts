/**
 * Messages between the agent and its proxy process (Node's IPC channel, JSON).
 *
 *   agent -> proxy   {type: "snapshot", snapshot}        proxy -> agent  {type: "ready", ports}
 *                    {type: "hosts-full", to, part, ...}                 {type: "ack", version}
 *                    {type: "hosts", from, to, set, del}                 {type: "hosts-ack", to, ok, error?}
 *                    {type: "dns-done", id, ok}                          {type: "l7", event, src, dst}
 *                                                                        {type: "l7-batch", events: [{event, src, dst}]}
 *                    {type: "identity-of", id, address}                  {type: "dns-answer", id, ...}
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
 * client's first connection). Both sides check the shape of what they
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
  | { readonly type: "dns-done"; readonly id: number; readonly ok: boolean }
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
  | { readonly type: "fatal"; readonly message: string };

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

/** The message rebuilt from what the proxy sent, if well-formed; else undefined. */
export function fromProxy(m: unknown): FromProxy | undefined {
  if (!isObj(m)) return undefined;
  switch (m.type) {
    case "ready":
      return { type: "ready" };
    case "ack":
      return typeof m.version === "number" ? { type: "ack", version: m.version } : undefined;
    case "hosts-ack":
      if (!isInt(m.to, Number.MAX_SAFE_INTEGER) || typeof m.ok !== "boolean") return undefined;
      // Why the proxy refused the content (hosts-wire.ts): shown in the agent's log, so bounded.
      return typeof m.error === "string" && !m.ok
        ? { type: "hosts-ack", to: m.to, ok: false, error: m.error.slice(0, 300) }
        : { type: "hosts-ack", to: m.to, ok: m.ok };
    case "identity":
      return isInt(m.id, Number.MAX_SAFE_INTEGER) && isInt(m.identity, 0xffffffff)
        ? { type: "identity", id: m.id, identity: m.identity }
        : undefined;
    case "l7": {
      const event = l7EventFrom(m.event);
      const src = addrFrom(m.src);
      const dst = addrFrom(m.dst);
      return event && src && dst ? { type: "l7", event, src, dst } : undefined;
    }
    case "l7-batch": {
      if (!Array.isArray(m.events) || m.events.length > MAX_L7_BATCH) return undefined;
      // Each event is rebuilt as a single one would be; a malformed one is dropped, not the others.
      const events: L7Flow[] = [];
      for (const e of m.events as unknown[]) {
        if (!isObj(e)) continue;
        const event = l7EventFrom(e.event);
        const src = addrFrom(e.src);
        const dst = addrFrom(e.dst);
        if (event && src && dst) events.push({ event, src, dst });
      }
      return { type: "l7-batch", events };
    }
    case "dns-answer": {
      const a = dnsAnswerFrom(m);
      return a ? { type: "dns-answer", ...a } : undefined;
    }
    case "fatal":
      return typeof m.message === "string" ? { type: "fatal", message: m.message.slice(0, 1000) } : undefined;
    default:
      return undefined;
  }
}

/** The message if it has the shape of one the agent sends; else undefined. */
export function toProxy(m: unknown): ToProxy | undefined {
  if (!isObj(m)) return undefined;
  if (m.type === "dns-done")
    return typeof m.id === "number" && typeof m.ok === "boolean"
      ? { type: "dns-done", id: m.id, ok: m.ok }
      : undefined;
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
