/**
 * One client connection of a gateway listener. Each request is read with the
 * proxy's strict HTTP/1.1 parser (src/proxy/http: the smuggling defences
 * apply: two lengths, bad chunking, bare LF, odd targets -> 400 and close),
 * its body read whole (up to `maxBody`, else 413), routed by match.ts, and
 * answered in order (pipelined requests wait):
 *
 *   not found -> 404 | redirect -> 3xx Location | unresolved backend -> 500
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
import { NOT_FORWARDED, parseRequestHead, type RequestHead } from "../proxy/http/request.js";
import type { OutgoingRequest } from "./filters.js";
import { forwardOverH2 } from "./h1-to-h2.js";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import { decide, type RouteDecision } from "./match.js";
import type { HeaderModifier, RuleTimeouts } from "./model.js";
import type { BackendTarget, ServedPort } from "./table.js";
import { forwardH1, mirrorH1 } from "./forward-h1.js";
import type { UpstreamPool } from "./upstream.js";
import { attemptLimitMs } from "./timeouts.js";
import { reply } from "./reply.js";

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
  /** The current request's rule timeouts and its request deadline (performance.now() time). */
  private limits: { t?: RuleTimeouts; deadline?: number } = {};
  private conn!: ByteConn;
  private peer = { address: "", port: 0 };

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

  /** The TLS server name of an HTTPS connection ("" without SNI); nothing for plain HTTP. */
  private sni(): { sni?: string } {
    const c = this.client as Partial<TLSSocket>;
    if (c.encrypted !== true) return {};
    return { sni: typeof c.servername === "string" ? c.servername : "" };
  }

  private clientInfo(): { address: string; port: number } {
    return this.peer;
  }

  /** Reads the next complete request (head and body) and serves it. */
  private next(): void {
    if (this.busy || this.closed || this.buf.length === 0) return;
    const started = performance.now();
    const r = parseRequestHead(this.buf, { maxHeadBytes: this.maxHead, maxHeaders: 100 });
    if (r.kind === "incomplete") return;
    if (r.kind === "error") return this.fail(400, started, undefined, r.reason);
    const body = this.readBody(r.head, this.buf.subarray(r.length));
    if (body === "incomplete") return;
    if (typeof body === "object" && "error" in body)
      return this.fail(body.status, started, r.head, body.error);
    this.buf = this.buf.subarray(r.length + body.consumed);
    this.busy = true;
    this.conn.resume();
    this.serve(r.head, body.data, started);
  }

  private readBody(
    head: RequestHead,
    rest: Buffer,
  ): "incomplete" | { data: Buffer; consumed: number } | { error: string; status: number } {
    const f = head.framing;
    if (f.kind === "none") return { data: Buffer.alloc(0), consumed: 0 };
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
    this.event(started, head, { status, reason });
    this.conn.write(reply(status, true));
    this.close();
  }

  private event(
    started: number,
    head: RequestHead | undefined,
    e: Partial<GatewayEvent> & { status: number },
  ): void {
    this.deps.onEvent({
      listener: this.listener,
      client: this.clientInfo(),
      ...(head ? { method: head.method, url: `${head.host ?? ""}${head.target}` } : {}),
      latencyMs: +(performance.now() - started).toFixed(3),
      ...e,
    });
  }

  private serve(head: RequestHead, body: Buffer, started: number): void {
    const port = this.deps.port();
    if (!port) return this.fail(503, started, head, "listener no longer served");
    const headers = head.headers
      .filter((h) => !NOT_FORWARDED.has(h.lower))
      .map((h) => ({ name: h.name, value: h.value }));
    const d: RouteDecision = decide(
      port,
      { method: head.method, target: head.target, host: head.host, headers, ...this.sni() },
      this.deps.random,
    );
    const route = d.kind === "not-found" || d.kind === "misdirected" ? undefined : d.rule.route;
    const done = (status: number, e: Partial<GatewayEvent> = {}): void => {
      this.event(started, head, { status, ...(route ? { route } : {}), ...e });
      this.busy = false;
      if (head.close || this.mustClose) return this.close();
      this.next();
      if (this.ended && !this.busy) this.close();
    };
    if (d.kind === "misdirected") {
      this.conn.write(reply(421, head.close, [], head.method === "HEAD"));
      return done(421, { reason: "the TLS server name chose another listener than the Host" });
    }
    if (d.kind === "not-found") {
      this.conn.write(reply(404, head.close, [], head.method === "HEAD"));
      return done(404, { reason: "no route matched" });
    }
    if (d.kind === "redirect") {
      this.conn.write(reply(d.status, head.close, [`location: ${d.location}`], head.method === "HEAD"));
      return done(d.status);
    }
    if (d.kind === "error") {
      this.conn.write(reply(500, head.close, [], head.method === "HEAD"));
      return done(500, { reason: d.reason });
    }
    const fwd = d.request;
    const t = d.rule.timeouts;
    this.limits = { ...(t ? { t } : {}), ...(t?.requestMs ? { deadline: started + t.requestMs } : {}) };
    const lines = [`${fwd.method} ${fwd.target} HTTP/1.1`];
    for (const h of fwd.headers) lines.push(`${h.name}: ${h.value}`);
    const xff = headers.find((h) => h.name.toLowerCase() === "x-forwarded-for")?.value;
    const peer = this.peer.address;
    if (!xff) lines.push(`x-forwarded-for: ${peer}`);
    lines.push(`x-forwarded-proto: ${port.protocol === "HTTPS" ? "https" : "http"}`);
    if (body.length > 0 || head.framing.kind !== "none") lines.push(`content-length: ${body.length}`);
    const wire = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body]);
    for (const m of d.mirrors) this.mirror(m, wire);
    if (d.backend.h2c && this.deps.sessions) {
      const extra = [{ name: "x-forwarded-for", value: xff ?? peer }, { name: "x-forwarded-proto", value: port.protocol === "HTTPS" ? "https" : "http" }]; // prettier-ignore
      return this.forwardH2(d.backend, fwd, extra, body, head, d.responseHeaders, started, done);
    }
    this.forward(d.backend, wire, head, d.responseHeaders, started, done);
  }

  /** To an h2c backend (h1-to-h2.ts): the same answers as forward() on failure. */
  private forwardH2(
    b: BackendTarget,
    fwd: OutgoingRequest,
    extra: readonly { name: string; value: string }[],
    body: Buffer,
    head: RequestHead,
    mods: readonly HeaderModifier[],
    started: number,
    done: (status: number, e?: Partial<GatewayEvent>) => void,
  ): void {
    const address = this.pickEndpoint(b, undefined);
    const service = `${b.namespace}/${b.name}`;
    if (!address || !this.deps.sessions) {
      this.conn.write(reply(503, head.close));
      return done(503, { reason: `no endpoint of ${service}` });
    }
    const backend = { service, address, port: b.port };
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
      ...this.limitNow(),
      write: (x) => this.conn.write(x),
      done: (o) => {
        if (o.failed === undefined) return done(o.status, { backend });
        // A route timeout before the head: 504, and the client connection goes on (as forward-h1.ts).
        if (o.expired === true && !o.headSent) return void (this.conn.write(reply(504, head.close)), done(504, { reason: o.failed, backend })); // prettier-ignore
        this.event(started, head, { status: o.status, reason: o.failed, backend });
        this.busy = false;
        if (o.headSent) return void this.conn.destroy();
        this.conn.write(reply(502, true));
        this.close();
      },
    });
  }

  /** `{limitMs}` of this attempt from the request's route timeouts (timeouts.ts), `{}` when none. */
  private limitNow(): { limitMs?: number } {
    const ms = attemptLimitMs(this.limits.t, this.limits.deadline, performance.now());
    return ms !== undefined ? { limitMs: ms } : {};
  }

  private pickEndpoint(b: BackendTarget, avoid: string | undefined): string | undefined {
    const all = this.deps.endpoints(b.namespace, b.name);
    const choices = all.length > 1 && avoid ? all.filter((a) => a !== avoid) : all;
    if (choices.length === 0) return undefined;
    return choices[Math.floor((this.deps.random ?? Math.random)() * choices.length)];
  }

  private mirror(b: BackendTarget, wire: Buffer): void {
    const addr = this.pickEndpoint(b, undefined);
    if (addr) mirrorH1(this.deps.pool, addr, b.port, wire);
  }

  private forward(
    b: BackendTarget,
    wire: Buffer,
    head: RequestHead,
    mods: readonly HeaderModifier[],
    started: number,
    done: (status: number, e?: Partial<GatewayEvent>) => void,
  ): void {
    const service = `${b.namespace}/${b.name}`;
    const addr = this.pickEndpoint(b, undefined);
    if (!addr) {
      this.conn.write(reply(503, head.close));
      return done(503, { reason: `no endpoint of ${service}` });
    }
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
        limitMs: () => attemptLimitMs(this.limits.t, this.limits.deadline, performance.now()),
        pick: (avoid) => this.pickEndpoint(b, avoid),
        clientClosed: () => this.closed,
        mustClose: () => void (this.mustClose = true),
        outcome: (o) => {
          const backend = { service, address: o.address, port: b.port };
          if (o.kind === "done") return done(o.status, { backend });
          // A route timeout before the head: 504, and the client connection goes on.
          if (o.kind === "expired") return void (this.conn.write(reply(504, head.close)), done(504, { reason: o.reason ?? "", backend })); // prettier-ignore
          this.event(started, head, { status: o.status, backend, ...(o.reason !== undefined ? { reason: o.reason } : {}) }); // prettier-ignore
          this.busy = false;
          if (o.kind === "cut") return this.conn.destroy();
          this.conn.write(reply(503, true));
          this.close();
        },
      },
      addr,
      0,
    );
  }
}
