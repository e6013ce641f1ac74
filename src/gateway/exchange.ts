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
 */
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { performance } from "node:perf_hooks";
import { ChunkedDecoder } from "../proxy/http/chunked.js";
import { NOT_FORWARDED, parseRequestHead, type RequestHead } from "../proxy/http/request.js";
import { parseResponseHead, ResponseReader } from "../proxy/http/response.js";
import type { OutgoingRequest } from "./filters.js";
import { forwardOverH2 } from "./h1-to-h2.js";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import { decide, type RouteDecision } from "./match.js";
import type { HeaderModifier, RuleTimeouts } from "./model.js";
import type { BackendTarget, ServedPort } from "./table.js";
import { rewriteHead, type UpstreamPool } from "./upstream.js";
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
}

export class GatewayExchange {
  private buf: Buffer = Buffer.alloc(0);
  private busy = false;
  /** The current response is close-delimited (or said close): the client connection ends after it. */
  private mustClose = false;
  private closed = false;
  private readonly maxBody: number;
  private readonly maxHead: number;
  /** The current request's rule timeouts and its request deadline (performance.now() time). */
  private limits: { t?: RuleTimeouts; deadline?: number } = {};

  constructor(
    private readonly client: Socket,
    private readonly listener: string,
    private readonly deps: ExchangeDeps,
  ) {
    this.maxBody = deps.maxBody ?? 1024 * 1024;
    this.maxHead = deps.maxHeadBytes ?? 64 * 1024;
  }

  start(): void {
    const c = this.client;
    c.setNoDelay(true);
    c.setTimeout(60_000, () => this.close());
    c.on("error", () => this.close());
    c.on("close", () => (this.closed = true));
    c.on("data", (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      if (this.buf.length > this.maxHead + this.maxBody + 65536) c.pause();
      this.next();
    });
    c.on("end", () => {
      if (!this.busy) this.close();
    });
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.end();
    setTimeout(() => this.client.destroy(), 2000).unref();
  }

  /** The TLS server name of an HTTPS connection ("" without SNI); nothing for plain HTTP. */
  private sni(): { sni?: string } {
    const c = this.client as Partial<TLSSocket>;
    if (c.encrypted !== true) return {};
    return { sni: typeof c.servername === "string" ? c.servername : "" };
  }

  private clientInfo(): { address: string; port: number } {
    return { address: this.client.remoteAddress ?? "", port: this.client.remotePort ?? 0 };
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
    this.client.resume();
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
    this.client.write(reply(status, true));
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
    };
    if (d.kind === "misdirected") {
      this.client.write(reply(421, head.close, [], head.method === "HEAD"));
      return done(421, { reason: "the TLS server name chose another listener than the Host" });
    }
    if (d.kind === "not-found") {
      this.client.write(reply(404, head.close, [], head.method === "HEAD"));
      return done(404, { reason: "no route matched" });
    }
    if (d.kind === "redirect") {
      this.client.write(reply(d.status, head.close, [`location: ${d.location}`], head.method === "HEAD"));
      return done(d.status);
    }
    if (d.kind === "error") {
      this.client.write(reply(500, head.close, [], head.method === "HEAD"));
      return done(500, { reason: d.reason });
    }
    const fwd = d.request;
    const t = d.rule.timeouts;
    this.limits = { ...(t ? { t } : {}), ...(t?.requestMs ? { deadline: started + t.requestMs } : {}) };
    const lines = [`${fwd.method} ${fwd.target} HTTP/1.1`];
    for (const h of fwd.headers) lines.push(`${h.name}: ${h.value}`);
    const xff = headers.find((h) => h.name.toLowerCase() === "x-forwarded-for")?.value;
    const peer = this.client.remoteAddress ?? "";
    if (!xff) lines.push(`x-forwarded-for: ${peer}`);
    lines.push(`x-forwarded-proto: ${port.protocol === "HTTPS" ? "https" : "http"}`);
    if (body.length > 0 || head.framing.kind !== "none") lines.push(`content-length: ${body.length}`);
    const wire = Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body]);
    for (const m of d.mirrors) this.mirror(m, wire);
    if (d.backend.h2c && this.deps.sessions) {
      const extra = [{ name: "x-forwarded-for", value: xff ?? peer }, { name: "x-forwarded-proto", value: port.protocol === "HTTPS" ? "https" : "http" }]; // prettier-ignore
      return this.forwardH2(d.backend, fwd, extra, body, head, d.responseHeaders, started, done);
    }
    this.forward(d.backend, wire, head, d.responseHeaders, started, done, 0);
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
      this.client.write(reply(503, head.close));
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
      write: (x) => this.client.write(x),
      done: (o) => {
        if (o.failed === undefined) return done(o.status, { backend });
        this.event(started, head, { status: o.status, reason: o.failed, backend });
        this.busy = false;
        if (o.headSent) return void this.client.destroy();
        this.client.write(reply(502, true));
        this.close();
      },
    });
  }

  private pickEndpoint(b: BackendTarget, avoid: string | undefined): string | undefined {
    const all = this.deps.endpoints(b.namespace, b.name);
    const choices = all.length > 1 && avoid ? all.filter((a) => a !== avoid) : all;
    if (choices.length === 0) return undefined;
    return choices[Math.floor((this.deps.random ?? Math.random)() * choices.length)];
  }

  private mirror(b: BackendTarget, wire: Buffer): void {
    const addr = this.pickEndpoint(b, undefined);
    if (!addr) return;
    const { socket } = this.deps.pool.acquire(addr, b.port);
    socket.on("error", () => socket.destroy());
    socket.setTimeout(10_000, () => socket.destroy());
    // The copy's answer is not wanted, but the connection stays open until it starts: a half-close
    // right after the write made servers that answer a turn later drop the mirrored request.
    socket.once("data", () => socket.destroy());
    socket.write(wire);
  }

  private forward(
    b: BackendTarget,
    wire: Buffer,
    head: RequestHead,
    mods: readonly HeaderModifier[],
    started: number,
    done: (status: number, e?: Partial<GatewayEvent>) => void,
    attempt: number,
    avoid?: string,
  ): void {
    const addr = this.pickEndpoint(b, avoid);
    const service = `${b.namespace}/${b.name}`;
    if (!addr) {
      this.client.write(reply(503, head.close));
      return done(503, { reason: `no endpoint of ${service}` });
    }
    const backend = { service, address: addr, port: b.port };
    const { socket: up, reused } = this.deps.pool.acquire(addr, b.port);
    const reader = new ResponseReader(head.method, this.maxHead);
    let pending: Buffer = Buffer.alloc(0);
    let headDone = false;
    let status = 0;
    let finished = false;
    // A backend that does not answer the SYN (dropped by its policy, gone): 503 after the connect timeout.
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      up.destroy(new Error("connect timeout"));
    }, this.deps.connectTimeoutMs ?? 5000);
    if (reused) clearTimeout(timer);
    else up.once("connect", () => clearTimeout(timer));
    up.setTimeout(60_000, () => up.destroy(new Error("backend idle for 60 s")));
    const limit = attemptLimitMs(this.limits.t, this.limits.deadline, performance.now());
    const cut = limit === undefined ? undefined : setTimeout(() => expired(), limit);
    const finish = (reuse: boolean): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      clearTimeout(cut);
      if (reuse) this.deps.pool.release(addr, b.port, up);
      else up.destroy();
    };
    const failed = (why: string): void => {
      if (finished) return;
      finish(false);
      // Nothing reached the client yet: another endpoint (or a fresh connection) once.
      if (!headDone && attempt === 0 && !timedOut && !this.closed)
        return this.forward(b, wire, head, mods, started, done, 1, reused ? undefined : addr);
      if (!headDone) {
        this.client.write(reply(503, true));
        this.event(started, head, { status: 503, reason: why, backend });
        this.busy = false;
        return this.close();
      }
      this.event(started, head, { status: 502, reason: why, backend });
      this.client.destroy();
    };
    // A route timeout: the backend connection is closed (never pooled half read); 504 if no head was sent yet.
    const expired = (): void => {
      if (finished) return;
      finish(false);
      const reason = "the route's timeouts were exceeded";
      if (!headDone) return void (this.client.write(reply(504, head.close)), done(504, { reason, backend }));
      this.event(started, head, { status, reason, backend });
      this.client.destroy();
    };
    up.on("error", (e) => failed(e.message));
    up.on("close", () => {
      if (finished) return;
      if (headDone && reader.endOfInput()) {
        finish(false);
        done(status, { backend });
        return;
      }
      failed("upstream closed before the response ended");
    });
    up.on("data", (d: Buffer) => {
      if (finished) return;
      let out: Buffer[];
      if (!headDone) {
        pending = pending.length === 0 ? d : Buffer.concat([pending, d]);
        for (;;) {
          const r = parseResponseHead(pending, head.method, this.maxHead);
          if (r.kind === "incomplete") return;
          if (r.kind === "error") return failed(r.reason);
          if (r.head.interim) {
            pending = pending.subarray(r.length);
            continue;
          }
          headDone = true;
          status = r.head.status;
          const res = reader.push(pending);
          if ("error" in res) return failed(res.error);
          const keepClient = !head.close && r.head.framing.kind !== "close";
          if (!keepClient) this.mustClose = true;
          // What the reader passes on starts with this head (as one piece or the start of one): the rest is body.
          const body = Buffer.concat(res.forward).subarray(r.length);
          out = [rewriteHead(pending.subarray(0, r.length), mods, keepClient), body];
          this.client.write(Buffer.concat(out));
          if (res.done) {
            finish(!res.close && res.extra === 0);
            done(status, { backend });
          }
          return;
        }
      }
      const res = reader.push(d);
      if ("error" in res) return failed(res.error);
      for (const piece of res.forward) this.client.write(piece);
      if (res.done) {
        finish(!res.close && res.extra === 0);
        done(status, { backend });
      }
    });
    up.write(wire);
  }
}
