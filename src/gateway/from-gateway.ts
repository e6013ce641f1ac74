/**
 * What the agent accepts from the gateway process. The gateway parses requests from the network
 * and runs without root; the agent runs as root and turns each event into a flow (Hubble, metrics,
 * the export) and looks up its backend's endpoint by address (agent/gateway-start.ts l7Of): a
 * compromised gateway must not crash the agent or smuggle fields into flows. As with the proxy's
 * messages (proxy/runtime/protocol.ts fromProxy, with the same checks from validate.ts), every
 * message is rebuilt from its known fields, types and bounds checked, unknown fields left out.
 *
 *   IPC message --GatewayInbox.receive--> applied: rebuilt --> the push waiting for it
 *                                         events: each rebuilt --> onEvent   a bad one: counted, dropped
 *                                         anything else: counted, dropped
 *
 * A bad event is dropped alone, not its batch (fromProxy's habit for `l7-batch`); a batch that is
 * not an array or is longer than the gateway ever sends (MAX_GATEWAY_EVENTS) is refused whole.
 * Each reason is logged once, as a fixed word: nothing the gateway sent is echoed.
 */
import type { Logger } from "pino";
import { isAddrPort } from "../abi/addr-port.js";
import { int, isLatency, isObj, MAX_TEXT, text } from "../proxy/runtime/validate.js";
import { MAX_GATEWAY_EVENTS } from "./event-batch.js";
import type { GatewayEvent } from "./exchange.js";

type Writable<T> = { -readonly [K in keyof T]: T[K] };

export interface GatewayApplied {
  readonly type: "applied";
  readonly version: number;
  readonly serving: readonly string[];
  readonly error?: string;
}

/** Why a message or an event was dropped (a fixed word per check: the counters' keys). */
export type GatewayDrop =
  | "message"
  | "applied"
  | "events batch"
  | "event"
  | "listener"
  | "client"
  | "status"
  | "latency"
  | "backend"
  | "route"
  | "method"
  | "url"
  | "reason"
  | "httpVersion";

/** `host:port` of a listener: the longest address (45) and a port. */
const MAX_LISTENER = 45 + 6;
/** `namespace/name` (253 each) of a route or a backend Service. */
const MAX_NAME = 512;
/** Listeners the gateway serves (addresses x ports); an applied message naming more is refused. */
const MAX_SERVING = 4096;

/**
 * The client as the gateway read it from its socket: an address and port, or "" when the socket
 * had none to give (reset before the gateway asked: exchange.ts, h2-stream.ts). Bytes the client
 * sent before its reset are still served, so that request is still a flow, not a refused event.
 */
function clientFrom(v: unknown): { address: string; port: number } | undefined {
  if (isAddrPort(v)) return { address: v.address, port: v.port };
  return isObj(v) && v.address === "" && int(v.port, 0, 65535) ? { address: "", port: v.port } : undefined;
}

/** One event rebuilt from its known fields, or the first check it fails. */
export function gatewayEventFrom(v: unknown): GatewayEvent | GatewayDrop {
  if (!isObj(v)) return "event";
  if (!text(v.listener, MAX_LISTENER)) return "listener";
  const client = clientFrom(v.client);
  if (!client) return "client";
  // Three digits as a backend may send them (the proxy's response parser takes any: a backend
  // answering 999 must not hide its requests from the flows), or 0: the client left before any
  // answer (h2-to-h1.ts).
  if (!int(v.status, 0, 999)) return "status";
  if (!isLatency(v.latencyMs)) return "latency";
  const e: Writable<GatewayEvent> = {
    listener: v.listener,
    client,
    status: v.status,
    latencyMs: v.latencyMs,
  };
  if (v.backend !== undefined) {
    const b = v.backend;
    const service = isObj(b) ? b.service : undefined;
    if (!isAddrPort(b) || !text(service, MAX_NAME)) return "backend";
    e.backend = { service, address: b.address, port: b.port };
  }
  if (v.route !== undefined) {
    if (!text(v.route, MAX_NAME)) return "route";
    e.route = v.route;
  }
  // The request's own text: its length is the client's (up to the gateway's head limit, 64 KiB),
  // not the gateway's choice; longer than the proxy's events keep, the field is left out as
  // l7EventFrom does, never the event (a long URL must not hide a request from the flows).
  for (const k of ["method", "url", "reason"] as const) {
    const s = v[k];
    if (s === undefined) continue;
    if (typeof s !== "string") return k;
    if (s.length <= MAX_TEXT) e[k] = s;
  }
  if (v.httpVersion !== undefined) {
    if (v.httpVersion !== "HTTP/2") return "httpVersion";
    e.httpVersion = v.httpVersion;
  }
  return e;
}

function appliedFrom(m: Record<string, unknown>): GatewayApplied | undefined {
  if (!int(m.version, 0, Number.MAX_SAFE_INTEGER)) return undefined;
  const s = m.serving;
  if (!Array.isArray(s) || s.length > MAX_SERVING || !s.every((x) => text(x, MAX_LISTENER))) return undefined;
  const serving = [...(s as string[])];
  // Why listeners are not served: the agent logs it, so bounded.
  if (m.error === undefined) return { type: "applied", version: m.version, serving };
  return typeof m.error === "string"
    ? { type: "applied", version: m.version, serving, error: m.error.slice(0, 1000) }
    : undefined;
}

export interface GatewayInboxParams {
  readonly logger?: Pick<Logger, "warn">;
  readonly onEvent?: (e: GatewayEvent) => void;
  readonly onApplied: (m: GatewayApplied) => void;
}

/** The agent's side of the gateway's IPC channel: each message checked before anything uses it. */
export class GatewayInbox {
  private readonly drops = new Map<GatewayDrop, number>();

  constructor(private readonly p: GatewayInboxParams) {}

  /** What was dropped, by reason. */
  get dropped(): Readonly<Partial<Record<GatewayDrop, number>>> {
    return Object.fromEntries(this.drops);
  }

  receive(m: unknown): void {
    if (!isObj(m)) return this.drop("message");
    if (m.type === "applied") {
      const a = appliedFrom(m);
      return a ? this.p.onApplied(a) : this.drop("applied");
    }
    if (m.type !== "events") return this.drop("message");
    // One turn's events (event-batch.ts): a message over the bound is not the gateway's own.
    if (!Array.isArray(m.events) || m.events.length > MAX_GATEWAY_EVENTS) return this.drop("events batch");
    for (const raw of m.events as unknown[]) {
      const e = gatewayEventFrom(raw);
      if (typeof e === "string") this.drop(e);
      else this.p.onEvent?.(e);
    }
  }

  private drop(why: GatewayDrop): void {
    const n = (this.drops.get(why) ?? 0) + 1;
    this.drops.set(why, n);
    if (n === 1)
      this.p.logger?.warn({ reason: why }, "malformed message or event from the gateway process dropped (said once per reason)"); // prettier-ignore
  }
}
