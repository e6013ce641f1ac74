/**
 * HTTP/2 cleartext ("h2c", prior knowledge) and gRPC enforcing proxy: one
 * client connection in, one upstream HTTP/2 session (to the original
 * destination, opened on the first allowed request) out. Policy is applied
 * per request, i.e. per stream, with the same model as HTTP/1.1.
 *
 *   client --preface, frames--> node:http2 server session (nghttp2: framing, HPACK, limits)
 *     each stream --parseRequestHeaders--> lookup (per request) --judgeRequest (all stages)-->
 *        no policy / bad policy: RST_STREAM REFUSED_STREAM        (error)
 *        malformed:              RST_STREAM PROTOCOL_ERROR        (error)
 *        denied:                 403 "Access denied\r\n" | gRPC trailers-only grpc-status 7 (denied)
 *        allowed:                H2Exchange --> upstream session stream   (forwarded)
 *   one L7Event per request, when its client stream closes (never header values or bodies)
 *
 * gRPC is HTTP/2 with `POST /package.Service/Method`: path rules select
 * methods, and a denied call is answered the way Envoy answers it (see
 * replies.ts). Node's http2 server adopts the socket: `server.emit
 * ("connection", socket)`; bytes the caller already read to sniff the
 * preface are given back as `head` and replayed with `unshift`.
 */
import http2, {
  constants,
  type ClientHttp2Session,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { normalizeHttpPath } from "../../policy/l7/http.js";
import {
  guardSink,
  policyFor,
  type ConnectionInfo,
  type L7Event,
  type L7LookupResult,
  type L7PolicyLookup,
  type L7Sink,
} from "../types.js";
import { H2Exchange } from "./exchange.js";
import { onHeaderEvent, parseRequestHeaders } from "./headers.js";
import { judgeRequest } from "./judge.js";
import { actionTexts } from "../http/judged.js";
import { ACCESS_DENIED_BODY, localReply } from "./replies.js";
import { traceIdOf } from "../http/trace-context.js";

export { HTTP2_PREFACE, looksLikeHttp2 } from "./preface.js";

export interface Http2ProxyLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS offered to the client; nghttp2 refuses streams beyond it. */
  readonly maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: a larger request header list resets the stream (ENHANCE_YOUR_CALM). */
  readonly maxHeaderListSize: number;
  /** Request body bytes held back until a declared content-length is verified. */
  readonly maxBufferedBody: number;
  /** No frame either way on the client session for this long: GOAWAY, then close. */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_HTTP2_LIMITS: Http2ProxyLimits = {
  maxConcurrentStreams: 128,
  maxHeaderListSize: 64 * 1024,
  maxBufferedBody: 64 * 1024,
  idleTimeoutMs: 60_000,
};

export interface Http2ProxyDeps {
  readonly lookup: L7PolicyLookup;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly sink: L7Sink;
  readonly limits?: Partial<Http2ProxyLimits>;
}

/**
 * Takes over `client` (whose first bytes, if already read, are `head`);
 * returns at once, the connection lives on its events.
 */
export function handleHttp2Connection(
  client: Socket,
  info: ConnectionInfo,
  deps: Http2ProxyDeps,
  head?: Buffer,
): void {
  const limits = { ...DEFAULT_HTTP2_LIMITS, ...deps.limits };
  new Http2Connection(client, info, { ...deps, sink: guardSink(deps.sink) }, limits).start(head);
}

const {
  NGHTTP2_ENHANCE_YOUR_CALM,
  NGHTTP2_FLAG_END_STREAM,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_PROTOCOL_ERROR,
  NGHTTP2_REFUSED_STREAM,
} = constants;

class Http2Connection {
  private up: ClientHttp2Session | undefined;
  private closed = false;

  constructor(
    private readonly client: Socket,
    private readonly info: ConnectionInfo,
    private readonly deps: Http2ProxyDeps,
    private readonly limits: Http2ProxyLimits,
  ) {}

  start(head: Buffer | undefined): void {
    const c = this.client;
    c.on("error", () => c.destroy());
    c.setNoDelay(true);
    if (head && head.length > 0) c.unshift(head);
    // One server per connection: it only carries the settings and adopts the socket, it never listens.
    const server = http2.createServer({
      settings: {
        maxConcurrentStreams: this.limits.maxConcurrentStreams,
        maxHeaderListSize: this.limits.maxHeaderListSize,
      },
    });
    server.on("session", (s: ServerHttp2Session) => this.onSession(s));
    server.emit("connection", c);
  }

  private onSession(s: ServerHttp2Session): void {
    s.on("error", () => {});
    s.on("close", () => {
      this.closed = true;
      this.up?.destroy();
    });
    s.setTimeout(this.limits.idleTimeoutMs, () => {
      s.close();
      setTimeout(() => s.destroy(), 1000).unref();
    });
    onHeaderEvent(s, "stream", 1, (flags, raw, stream) => {
      const st = stream as ServerHttp2Stream;
      const started = performance.now();
      try {
        this.onStream(st, flags, raw, started);
      } catch (e) {
        // A bug resets this stream, never the process or the other streams (fail closed).
        this.emit(started, {
          verdict: "error",
          reason: `internal error: ${e instanceof Error ? e.message : String(e)}`,
        });
        if (!st.destroyed) st.close(NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  private onStream(stream: ServerHttp2Stream, flags: number, raw: readonly string[], started: number): void {
    stream.on("error", () => {});
    // nghttp2 applies our SETTINGS_MAX_HEADER_LIST_SIZE only once the client has acknowledged it;
    // requests sent before that are measured here (RFC 9113 §6.5.2: name + value + 32 per field,
    // i.e. 16 per entry of the raw [name, value, ...] list).
    let size = 0;
    for (const f of raw) size += f.length + 16;
    if (size > this.limits.maxHeaderListSize) {
      this.emit(started, {
        verdict: "error",
        reason: `header list larger than ${this.limits.maxHeaderListSize} bytes`,
      });
      stream.close(NGHTTP2_ENHANCE_YOUR_CALM);
      return;
    }
    const parsed = parseRequestHeaders(raw);
    if (!parsed.ok) {
      this.emit(started, { verdict: "error", reason: parsed.reason });
      stream.close(NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    const req = parsed.req;
    const path = normalizeHttpPath(req.path);
    const traceId = traceIdOf(req.headers["traceparent"]);
    const what = {
      method: req.method,
      url: `http://${req.authority}${path}`,
      ...(traceId !== undefined ? { traceId } : {}),
    };
    const policy = this.policy();
    if (!policy) {
      this.emit(started, { ...what, verdict: "error", reason: "no L7 policy for this connection" });
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    let verdict: ReturnType<typeof judgeRequest>;
    try {
      verdict = judgeRequest(policy, req, path);
    } catch (e) {
      const reason = `cannot apply the HTTP rules: ${e instanceof Error ? e.message : String(e)}`;
      this.emit(started, { ...what, verdict: "error", reason });
      stream.close(NGHTTP2_REFUSED_STREAM);
      return;
    }
    if (!verdict.allowed) {
      localReply(stream, {
        grpc: req.grpc,
        head: req.method === "HEAD",
        status: 403,
        body: ACCESS_DENIED_BODY,
      });
      stream.resume(); // a body still coming is read and dropped
      // `status` is the :status sent: 200 for gRPC (the denial is in grpc-status), as Envoy logs it.
      this.emit(started, {
        ...what,
        verdict: "denied",
        status: req.grpc ? 200 : 403,
        reason: "no HTTP rule matched",
      });
      return;
    }
    const rule = verdict.rule !== undefined ? { rule: verdict.rule } : {};
    const acts = verdict.actions ? { headerActions: actionTexts(verdict.actions) } : {};
    new H2Exchange({
      down: stream,
      req: verdict.headers ? { ...req, headers: verdict.headers } : req,
      path,
      endStream: (flags & NGHTTP2_FLAG_END_STREAM) !== 0,
      maxBufferedBody: this.limits.maxBufferedBody,
      upstream: () => this.upstream(),
      done: (o) => this.emit(started, { ...what, ...rule, ...(o.verdict === "forwarded" ? acts : {}), ...o }),
    }).start();
  }

  /** Looked up per request: a policy change applies to live connections. */
  private policy(): L7LookupResult | undefined {
    return policyFor(this.deps.lookup, this.info, "http");
  }

  /** The upstream session, opened on first use and again after it went away. */
  private upstream(): ClientHttp2Session {
    const cur = this.up;
    if (cur && !cur.closed && !cur.destroyed) return cur;
    if (this.closed) throw new Error("the client connection is closed");
    const { host, port } = this.info.originalDst;
    const authority = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
    const s = http2.connect(authority, { createConnection: () => this.deps.connectUpstream(host, port) });
    s.on("error", () => {});
    s.on("close", () => {
      if (this.up === s) this.up = undefined;
    });
    s.setTimeout(this.limits.idleTimeoutMs, () => s.close());
    this.up = s;
    return s;
  }

  private emit(started: number, e: Partial<L7Event> & Pick<L7Event, "verdict">): void {
    const i = this.info;
    this.deps.sink({
      type: "http",
      httpVersion: "HTTP/2",
      srcIdentity: i.srcIdentity,
      dstIdentity: i.dstIdentity,
      endpoint: i.endpoint,
      direction: i.direction,
      latencyMs: +(performance.now() - started).toFixed(3),
      ...e,
    });
  }
}
