/**
 * One client connection of a gateway listener. Each request is read with the
 * proxy's strict HTTP/1.1 parser (src/proxy/http: the smuggling defences
 * apply: two lengths, bad chunking, bare LF, odd targets -> 400 and close),
 * its body read whole (up to `maxBody`, else 413), routed by match.ts, and
 * answered in order (pipelined requests wait):
 *
 *   not found -> 404 | redirect -> 3xx Location | unresolved backend -> 500
 *   a backend whose endpoints are all the gateway's own listeners -> 500 (own-listeners.ts)
 *   forward -> an endpoint of the backend Service, over a kept-alive connection
 *              (HTTP/2 on that endpoint's session when the Service port says h2c: h1-to-h2.ts);
 *              the response head rewritten (ResponseHeaderModifier, hop-by-hop
 *              fields), its body streamed as framed; a connect failure tries
 *              another endpoint once, then 503; the rule's timeouts exceeded -> 504 (timeouts.ts)
 *
 * Both ends are ByteConns (src/proxy/http/conn.ts): a plain TCP client and the
 * backend connections are read and written through the native socket I/O add-on
 * when it is built (as the HTTP proxy; its fail-closed rules apply), TLS clients
 * and builds without it through Node's streams.
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { performance } from "node:perf_hooks";
import { ChunkedDecoder } from "../proxy/http/chunked.js";
import { streamConn, type ByteConn, type ConnEvents } from "../proxy/http/conn.js";
import { nativeClient, proxyIo } from "../proxy/http/native-io.js";
import { parseRequestHead, type RequestHead } from "../proxy/http/request.js";
import type { OutgoingRequest } from "./filters.js";
import { forwardOverH2 } from "./h1-to-h2.js";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import { decide, type GatewayRequest, type RouteDecision } from "./match.js";
import type { HeaderModifier, RuleTimeouts } from "./model.js";
import type { BackendTarget, ServedPort } from "./table.js";
import { forwardH1, mirrorH1, type ForwardOutcome, type H1Owner } from "./forward-h1.js";
import type { UpstreamPool } from "./upstream.js";
import { attemptLimitMs } from "./timeouts.js";
import { reply } from "./reply.js";
import {
  NO_ENDPOINT,
  ownListenerReason,
  pickEndpoint,
  type EndpointPick,
  type OwnListeners,
} from "./own-listeners.js";
import { forwardedFields, requestWire } from "./request-wire.js";

export interface GatewayEvent {
  readonly listener: string;
  readonly client: { readonly address: string; readonly port: number };
  readonly method?: string;
  readonly url?: string;
  readonly status: number;
  readonly route?: string;
  readonly backend?: { readonly service: string; readonly address: string; readonly port: number };
  readonly reason?: string;
  readonly latencyMs: number;
  /** Absent: HTTP/1.1. */
  readonly httpVersion?: "HTTP/2";
}

export interface ExchangeDeps {
  readonly port: () => ServedPort | undefined;
  /** Endpoint addresses of a Service's backends (ready ones). */
  readonly endpoints: (namespace: string, name: string) => readonly string[];
  readonly pool: UpstreamPool;
  /** Never a backend endpoint (own-listeners.ts). */
  readonly own: OwnListeners;
  readonly onEvent: (e: GatewayEvent) => void;
  readonly random?: () => number;
  readonly maxBody?: number;
  readonly maxHeadBytes?: number;
  readonly connectTimeoutMs?: number;
  /** HTTP/2 sessions to h2c backends (absent: every backend gets HTTP/1.1). */
  readonly sessions?: H2Sessions;
  /** "stream": the client socket on Node's streams even when the native add-on is built. */
  readonly io?: "native" | "stream";
}

export class GatewayExchange {
  private buf: Buffer = Buffer.alloc(0);
  private busy = false;
  /** The current response is close-delimited (or said close): the client connection ends after it. */
  private mustClose = false;
  private closed = false;
  /** The client sent its FIN: the connection ends once what it sent is answered. */
  private ended = false;
  private readonly maxBody: number;
  private readonly maxHead: number;
  /** The request being served (one at a time: pipelined ones wait in `buf`). */
  private head: RequestHead | undefined;
  private started = 0;
  private route: string | undefined;
  private backend: BackendTarget | undefined;
  /** Its rule's timeouts and its request deadline (performance.now() time). */
  private timeouts: RuleTimeouts | undefined;
  private deadline: number | undefined;
  private conn!: ByteConn;
  private peer = { address: "", port: 0 };
  /** What forward-h1.ts asks of the request in flight: made once per connection, not per request. */
  private readonly owner: H1Owner = {
    limitMs: () => attemptLimitMs(this.timeouts, this.deadline, performance.now()),
    pick: (avoid) => {
      const p = this.backend ? this.pickEndpoint(this.backend, avoid) : NO_ENDPOINT;
      return typeof p === "string" ? p : undefined;
    },
    clientClosed: () => this.closed,
    mustClose: () => void (this.mustClose = true),
    outcome: (o) => this.forwarded(o),
  };

  constructor(
    private readonly client: Socket,
    private readonly listener: string,
    private readonly deps: ExchangeDeps,
  ) {
    this.maxBody = deps.maxBody ?? 1024 * 1024;
    this.maxHead = deps.maxHeadBytes ?? 64 * 1024;
  }

  /** Takes the client socket (paused, any sniffed bytes unshifted into it) and serves it. */
  start(): void {
    const c = this.client;
    c.setNoDelay(true);
    this.peer = { address: c.remoteAddress ?? "", port: c.remotePort ?? 0 };
    const ev: ConnEvents = {
      data: (d) => this.onData(d),
      end: () => {
        this.ended = true;
        if (!this.busy) this.close();
      },
      gone: () => void (this.closed = true),
    };
    const io = proxyIo(this.deps.io);
    const native = io ? nativeClient(c, ev, io) : undefined;
    this.conn = native?.conn ?? streamConn(c, ev);
    // The server closing its sockets (listener removed, gateway stopped) must close the taken fd too.
    if (native) c.once("close", () => this.conn.destroy());
    this.conn.idle(60_000, () => this.close());
    if (native?.buffered) this.onData(native.buffered);
    if (!native) c.resume();
  }

  private onData(d: Buffer): void {
    if (this.closed) return; // lingering after our FIN: dropped
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    if (this.buf.length > this.maxHead + this.maxBody + 65536) this.conn.pause();
    this.next();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.conn.endAndLinger(2000);
  }

  /** The TLS server name of an HTTPS connection ("" without SNI); undefined for plain HTTP. */
  private sni(): string | undefined {
    const c = this.client as Partial<TLSSocket>;
    if (c.encrypted !== true) return undefined;
    return typeof c.servername === "string" ? c.servername : "";
  }

  /** Reads the next complete request (head and body) and serves it. */
  private next(): void {
    if (this.busy || this.closed || this.buf.length === 0) return;
    const started = performance.now();
    const r = parseRequestHead(this.buf, { maxHeadBytes: this.maxHead, maxHeaders: 100 });
    if (r.kind === "incomplete") return;
    if (r.kind === "error") return this.fail(400, started, undefined, r.reason);
    const body = this.readBody(r.head, this.buf, r.length);
    if (body === "incomplete") return;
    if (typeof body === "object" && "error" in body)
      return this.fail(body.status, started, r.head, body.error);
    const used = r.length + body.consumed;
    this.buf = used === this.buf.length ? EMPTY : this.buf.subarray(used);
    this.busy = true;
    this.conn.resume();
    this.serve(r.head, body.data, started);
  }

  /** The body of `head` in `buf` from `at` on. */
  private readBody(
    head: RequestHead,
    buf: Buffer,
    at: number,
  ): "incomplete" | { data: Buffer; consumed: number } | { error: string; status: number } {
    const f = head.framing;
    if (f.kind === "none") return NO_BODY;
    const rest = buf.subarray(at);
    if (f.kind === "length") {
      if (f.length > this.maxBody) return { error: "request body too large", status: 413 };
      return rest.length < f.length ? "incomplete" : { data: rest.subarray(0, f.length), consumed: f.length };
    }
    const dec = new ChunkedDecoder({ strict: true });
    const r = dec.push(rest);
    if ("error" in r) return { error: r.error, status: 400 };
    const data = Buffer.concat(r.data);
    if (data.length > this.maxBody) return { error: "request body too large", status: 413 };
    return r.done ? { data, consumed: r.consumed } : "incomplete";
  }

  private fail(status: number, started: number, head: RequestHead | undefined, reason: string): void {
    this.event(started, head, status, undefined, reason, undefined);
    this.conn.write(reply(status, true));
    this.close();
  }

  private event(
    started: number,
    head: RequestHead | undefined,
    status: number,
    route: string | undefined,
    reason: string | undefined,
    backend: GatewayEvent["backend"],
  ): void {
    // Built field by field, in one order: one object shape for every event.
    const e: Writable<GatewayEvent> = { listener: this.listener, client: this.peer, status, latencyMs: 0 };
    if (head) {
      e.method = head.method;
      e.url = `${head.host ?? ""}${head.target}`;
    }
    e.latencyMs = Math.round((performance.now() - started) * 1000) / 1000;
    if (route !== undefined) e.route = route;
    if (backend) e.backend = backend;
    if (reason !== undefined) e.reason = reason;
    this.deps.onEvent(e);
  }

  /** The request in flight is answered (`status`): its event, then the next request or the end. */
  private answered(status: number, reason?: string, backend?: GatewayEvent["backend"]): void {
    const head = this.head as RequestHead;
    this.event(this.started, head, status, this.route, reason, backend);
    this.busy = false;
    this.head = this.backend = undefined;
    if (head.close || this.mustClose) return this.close();
    this.next();
    if (this.ended && !this.busy) this.close();
  }

  /** An answer of the gateway's own to the request in flight. */
  private answer(status: number, reason?: string, extra: readonly string[] = []): void {
    const head = this.head as RequestHead;
    this.conn.write(reply(status, head.close, extra, head.method === "HEAD"));
    this.answered(status, reason);
  }

  private serve(head: RequestHead, body: Buffer, started: number): void {
    const port = this.deps.port();
    if (!port) return this.fail(503, started, head, "listener no longer served");
    const headers = forwardedFields(head.headers);
    const req: Writable<GatewayRequest> = {
      method: head.method,
      target: head.target,
      host: head.host,
      headers,
    };
    const sni = this.sni();
    if (sni !== undefined) req.sni = sni;
    const d: RouteDecision = decide(port, req, this.deps.random);
    this.head = head;
    this.started = started;
    this.route = d.kind === "not-found" || d.kind === "misdirected" ? undefined : d.rule.route;
    if (d.kind === "misdirected")
      return this.answer(421, "the TLS server name chose another listener than the Host");
    if (d.kind === "not-found") return this.answer(404, "no route matched");
    if (d.kind === "redirect") return this.answer(d.status, undefined, [`location: ${d.location}`]);
    if (d.kind === "error") return this.answer(500, d.reason);
    const fwd = d.request;
    const t = d.rule.timeouts;
    this.timeouts = t;
    this.deadline = t?.requestMs ? started + t.requestMs : undefined;
    const xff = headers.find((h) => h.lower === "x-forwarded-for")?.value;
    const proto = port.protocol === "HTTPS" ? "https" : "http";
    const peer = this.peer.address;
    const framed = head.framing.kind !== "none";
    const wire = requestWire({ request: fwd, forwardedFor: xff, peer, proto, body, framed });
    for (const m of d.mirrors) this.mirror(m, wire);
    if (d.backend.h2c && this.deps.sessions) {
      const extra = [{ name: "x-forwarded-for", value: xff ?? peer }, { name: "x-forwarded-proto", value: proto }]; // prettier-ignore
      return this.forwardH2(d.backend, fwd, extra, body, head, d.responseHeaders);
    }
    this.forward(d.backend, wire, head, d.responseHeaders);
  }

  /** To an h2c backend (h1-to-h2.ts): the same answers as forward() on failure. */
  private forwardH2(
    b: BackendTarget,
    fwd: OutgoingRequest,
    extra: readonly { name: string; value: string }[],
    body: Buffer,
    head: RequestHead,
    mods: readonly HeaderModifier[],
  ): void {
    const address = this.pickEndpoint(b, undefined);
    const service = `${b.namespace}/${b.name}`;
    if (typeof address !== "string" && address !== NO_ENDPOINT) return this.answer(500, ownListenerReason(service, b.port)); // prettier-ignore
    if (typeof address !== "string" || !this.deps.sessions) {
      this.conn.write(reply(503, head.close));
      return this.answered(503, `no endpoint of ${service}`);
    }
    const backend = { service, address, port: b.port };
    const limitMs = this.owner.limitMs();
    forwardOverH2({
      sessions: this.deps.sessions,
      address,
      port: b.port,
      method: fwd.method,
      target: fwd.target,
      authority: fwd.host ?? head.host ?? "",
      headers: [...fwd.headers.filter((h) => h.name.toLowerCase() !== "x-forwarded-for"), ...extra],
      body,
      mods,
      close: head.close,
      ...(limitMs !== undefined ? { limitMs } : {}),
      write: (x) => this.conn.write(x),
      done: (o) => {
        if (o.failed === undefined) return this.answered(o.status, undefined, backend);
        // A route timeout before the head: 504, and the client connection goes on (as forward-h1.ts).
        if (o.expired === true && !o.headSent) return void (this.conn.write(reply(504, head.close)), this.answered(504, o.failed, backend)); // prettier-ignore
        this.event(this.started, head, o.status, undefined, o.failed, backend);
        this.busy = false;
        if (o.headSent) return void this.conn.destroy();
        this.conn.write(reply(502, true));
        this.close();
      },
    });
  }

  private pickEndpoint(b: BackendTarget, avoid: string | undefined): EndpointPick {
    const all = this.deps.endpoints(b.namespace, b.name);
    return pickEndpoint(all, b.port, this.deps.own, this.deps.random ?? Math.random, avoid);
  }

  /** A mirror without an endpoint it may use is skipped (as one that does not resolve). */
  private mirror(b: BackendTarget, wire: Buffer): void {
    const addr = this.pickEndpoint(b, undefined);
    if (typeof addr === "string") mirrorH1(this.deps.pool, addr, b.port, wire);
  }

  private forward(b: BackendTarget, wire: Buffer, head: RequestHead, mods: readonly HeaderModifier[]): void {
    const addr = this.pickEndpoint(b, undefined);
    if (typeof addr !== "string" && addr !== NO_ENDPOINT) return this.answer(500, ownListenerReason(`${b.namespace}/${b.name}`, b.port)); // prettier-ignore
    if (typeof addr !== "string") {
      this.conn.write(reply(503, head.close));
      return this.answered(503, `no endpoint of ${b.namespace}/${b.name}`);
    }
    this.backend = b;
    forwardH1(
      {
        pool: this.deps.pool,
        client: this.conn,
        port: b.port,
        method: head.method,
        close: head.close,
        wire,
        mods,
        maxHead: this.maxHead,
        connectTimeoutMs: this.deps.connectTimeoutMs ?? 5000,
        owner: this.owner,
      },
      addr,
      0,
    );
  }

  /** forward-h1.ts's outcome for the request in flight. */
  private forwarded(o: ForwardOutcome): void {
    const b = this.backend as BackendTarget;
    const head = this.head as RequestHead;
    const backend = { service: `${b.namespace}/${b.name}`, address: o.address, port: b.port };
    if (o.kind === "done") return this.answered(o.status, undefined, backend);
    // A route timeout before the head: 504, and the client connection goes on.
    if (o.kind === "expired") {
      this.conn.write(reply(504, head.close));
      return this.answered(504, o.reason ?? "", backend);
    }
    this.event(this.started, head, o.status, undefined, o.reason, backend);
    this.busy = false;
    if (o.kind === "cut") return this.conn.destroy();
    this.conn.write(reply(503, true));
    this.close();
  }
}

type Writable<T> = { -readonly [K in keyof T]: T[K] };

const EMPTY = Buffer.alloc(0);
const NO_BODY = { data: EMPTY, consumed: 0 } as const;
