/**
 * Per-request L7 load balancing of a connection to an lb-l7 service
 * (`service.cilium.io/lb-l7: enabled`), as Cilium does it with Envoy: the
 * kernel redirected the client's connection to the ClusterIP here instead of
 * DNATing it to one backend (datapath/lb-compile.ts); each HTTP/2 request
 * (gRPC call) then goes to a backend chosen for that request alone, among
 * those the client's identity may reach (services.ts), on one shared HTTP/2
 * session per backend (http2/sessions.ts, the gateway's).
 *
 *   client --first bytes--> HTTP/2 preface? --yes--> node:http2 server session
 *        each stream --parseRequestHeaders--> pick a backend (random among the allowed)
 *           none allowed / no service any more: 503 | gRPC 14 UNAVAILABLE   (error)
 *           malformed:                          RST_STREAM PROTOCOL_ERROR   (error)
 *           otherwise:                          H2Exchange on that backend's session (forwarded)
 *                                        --no--> HTTP/1.1 or other TCP: one backend for the
 *                                                connection, bytes piped (per connection)
 *   one L7Event per request (never header values or bodies)
 *
 * Looked up per request: a snapshot that removes a backend or changes the policy
 * applies to the next request of a live connection.
 */
import http2, { constants, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { H2Exchange } from "../http2/exchange.js";
import { onHeaderEvent, parseRequestHeaders } from "../http2/headers.js";
import { sniffHttp2 } from "../http2/preface.js";
import { localReply } from "../http2/replies.js";
import type { H2Sessions } from "../http2/sessions.js";
import { guardSink, type L7Event, type L7Sink } from "../types.js";
import type { ProxyLbBackend, ProxyLbService } from "./services.js";

export interface LbConnection {
  readonly client: { readonly address: string; readonly port: number };
  readonly srcIdentity: number;
  /** The client's endpoint (`namespace/name`), "" when it is not a local endpoint (the node). */
  readonly endpoint: string;
}

export interface LbDeps {
  /** The service of the connection's frontend in the proxy's current table (undefined: gone). */
  readonly service: () => ProxyLbService | undefined;
  /** The backends of `s` the client's identity may reach now. */
  readonly backends: (s: ProxyLbService) => readonly ProxyLbBackend[];
  readonly identityOf: (address: string) => number;
  readonly sessions: H2Sessions;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly sink: L7Sink;
  readonly random?: () => number;
}

const IDLE_MS = 60_000;
const SETTINGS = { maxConcurrentStreams: 128, maxHeaderListSize: 64 * 1024 };
const MAX_BUFFERED_BODY = 64 * 1024;

/** Takes over `sock` (a redirected connection to an lb-l7 frontend); returns at once. */
export function handleLbConnection(sock: Socket, conn: LbConnection, deps: LbDeps): void {
  const d = { ...deps, sink: guardSink(deps.sink) };
  sock.on("error", () => sock.destroy());
  sock.setNoDelay(true);
  sniffHttp2(sock, (h2, head) => {
    sock.unshift(head);
    if (h2) return serveH2(sock, conn, d);
    pipeToOne(sock, conn, d);
  });
}

function pick(
  deps: LbDeps,
): { service: ProxyLbService; backend: ProxyLbBackend } | { service?: ProxyLbService; reason: string } {
  const service = deps.service();
  if (!service) return { reason: "the service is no longer balanced here" };
  const all = deps.backends(service);
  if (all.length === 0) return { service, reason: `no backend of ${service.name} reachable by this client` };
  const backend = all[Math.floor((deps.random ?? Math.random)() * all.length)] as ProxyLbBackend;
  return { service, backend };
}

function event(conn: LbConnection, deps: LbDeps, e: Partial<L7Event> & Pick<L7Event, "verdict">): void {
  deps.sink({
    type: "http",
    srcIdentity: conn.srcIdentity,
    dstIdentity: 0,
    endpoint: conn.endpoint,
    direction: "egress",
    client: conn.client,
    ...e,
  });
}

function serveH2(sock: Socket, conn: LbConnection, deps: LbDeps): void {
  // One server per connection: it carries the settings and adopts the socket, it never listens.
  const server = http2.createServer({ settings: SETTINGS });
  server.on("session", (s: ServerHttp2Session) => {
    s.on("error", () => undefined);
    s.setTimeout(IDLE_MS, () => {
      s.close();
      setTimeout(() => s.destroy(), 1000).unref();
    });
    onHeaderEvent(s, "stream", 1, (flags, raw, stream) => {
      const st = stream as ServerHttp2Stream;
      st.on("error", () => undefined);
      const started = performance.now();
      try {
        serveStream(st, flags, raw, conn, deps, started);
      } catch (e) {
        // A bug resets this stream, never the process or the session's other streams.
        event(conn, deps, { verdict: "error", reason: `internal error: ${e instanceof Error ? e.message : String(e)}` }); // prettier-ignore
        if (!st.destroyed) st.close(constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
  });
  server.emit("connection", sock);
}

function serveStream(
  st: ServerHttp2Stream,
  flags: number,
  raw: readonly string[],
  conn: LbConnection,
  deps: LbDeps,
  started: number,
): void {
  const ms = (): number => +(performance.now() - started).toFixed(3);
  let size = 0;
  for (const f of raw) size += f.length + 16; // RFC 9113 §6.5.2, before the client acknowledged our SETTINGS
  if (size > SETTINGS.maxHeaderListSize) {
    event(conn, deps, { verdict: "error", httpVersion: "HTTP/2", reason: "header list too large" });
    return void st.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }
  const parsed = parseRequestHeaders(raw);
  if (!parsed.ok) {
    event(conn, deps, { verdict: "error", httpVersion: "HTTP/2", reason: parsed.reason });
    return void st.close(constants.NGHTTP2_PROTOCOL_ERROR);
  }
  const req = parsed.req;
  const what = {
    httpVersion: "HTTP/2" as const,
    method: req.method,
    url: `http://${req.authority}${req.path}`,
  };
  const choice = pick(deps);
  if (!("backend" in choice)) {
    localReply(st, { grpc: req.grpc, head: req.method === "HEAD", status: 503, body: `${choice.reason}\n` });
    st.resume();
    return event(conn, deps, {
      ...what,
      verdict: "error",
      status: req.grpc ? 200 : 503,
      reason: choice.reason,
    });
  }
  const b = choice.backend;
  const server = { address: b.ip, port: b.port };
  new H2Exchange({
    down: st,
    req: { ...req, scheme: "http" },
    path: req.path,
    endStream: (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0,
    maxBufferedBody: MAX_BUFFERED_BODY,
    upstream: () => deps.sessions.get(b.ip, b.port),
    done: (o) =>
      event(conn, deps, {
        ...what,
        ...o,
        dstIdentity: deps.identityOf(b.ip),
        server,
        latencyMs: ms(),
      }),
  }).start();
}

/** Not HTTP/2: the connection goes whole to one allowed backend (balanced per connection). */
function pipeToOne(sock: Socket, conn: LbConnection, deps: LbDeps): void {
  const choice = pick(deps);
  if (!("backend" in choice)) {
    event(conn, deps, { verdict: "error", reason: choice.reason });
    return void sock.resetAndDestroy();
  }
  const b = choice.backend;
  const up = deps.connectUpstream(b.ip, b.port);
  up.setNoDelay(true);
  const both = (): void => {
    up.destroy();
    sock.destroy();
  };
  up.on("error", () => (sock.destroyed ? undefined : sock.resetAndDestroy(), up.destroy()));
  sock.on("close", both);
  up.on("close", () => sock.destroy());
  up.once("connect", () => {
    event(conn, deps, {
      verdict: "forwarded",
      dstIdentity: deps.identityOf(b.ip),
      server: { address: b.ip, port: b.port },
      reason: "not HTTP/2: balanced per connection",
    });
    sock.pipe(up);
    up.pipe(sock);
    sock.resume();
  });
}
