/**
 * HTTP/2 on a gateway listener (h2c with prior knowledge on HTTP, ALPN h2 on
 * HTTPS): node:http2 (nghttp2) frames the session; each stream is one
 * request, routed like an HTTP/1.1 one (match.ts; a gRPC call tries the
 * GRPCRoute rules first) and answered on its own:
 *
 *   malformed fields        -> RST_STREAM PROTOCOL_ERROR
 *   no route                -> 404 | gRPC: grpc-status 12 UNIMPLEMENTED
 *   redirect                -> 3xx + location
 *   unresolved backendRefs  -> 500 | gRPC: grpc-status 14 UNAVAILABLE (GRPCRoute's rule)
 *   no endpoint             -> 503 | gRPC: 14 UNAVAILABLE
 *   only own listeners      -> 500 | gRPC (GRPCRoute): 14 UNAVAILABLE (own-listeners.ts)
 *   forward                 -> an endpoint chosen for this request:
 *                              h2c backend: H2Exchange on that endpoint's session
 *                              (trailers and grpc-status pass through)
 *                              HTTP/1.1 backend: h2-to-h1.ts
 *                              RequestMirror: a copy to each mirror (h2-mirror.ts)
 */
import type http from "node:http";
import {
  constants,
  type OutgoingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import { performance } from "node:perf_hooks";
import { H2Exchange } from "../proxy/http2/exchange.js";
import { onHeaderEvent, parseRequestHeaders } from "../proxy/http2/headers.js";
import { localReply } from "../proxy/http2/replies.js";
import type { GatewayEvent } from "./exchange.js";
import { modifyHeaders } from "./filters.js";
import type { TLSSocket } from "node:tls";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import { mirrorStream } from "./h2-mirror.js";
import { bridgeToHttp1 } from "./h2-to-h1.js";
import { decide } from "./match.js";
import { attemptLimitMs } from "./timeouts.js";
import type { HeaderModifier } from "./model.js";
import type { BackendTarget, ServedPort } from "./table.js";
import { sourcesOf } from "./source.js";
import {
  OWN_LISTENER,
  ownListenerReason,
  pickEndpoint,
  type EndpointPick,
  type OwnListeners,
} from "./own-listeners.js";

export interface H2GatewayDeps {
  readonly port: () => ServedPort | undefined;
  readonly endpoints: (namespace: string, name: string) => readonly string[];
  /** Never a backend endpoint (own-listeners.ts). */
  readonly own: OwnListeners;
  readonly sessions: H2Sessions;
  readonly agent: http.Agent;
  readonly onEvent: (e: GatewayEvent) => void;
  readonly localAddress?: string;
  readonly localAddress6?: string;
  readonly random?: () => number;
}

export const H2_SETTINGS = { maxConcurrentStreams: 128, maxHeaderListSize: 64 * 1024 };

/** Serves the streams of one client session of listener `listener`. */
export function serveH2Session(s: ServerHttp2Session, listener: string, deps: H2GatewayDeps): void {
  s.on("error", () => undefined);
  s.setTimeout(60_000, () => {
    s.close();
    setTimeout(() => s.destroy(), 1000).unref();
  });
  const client = { address: s.socket?.remoteAddress ?? "", port: s.socket?.remotePort ?? 0 };
  onHeaderEvent(s, "stream", 1, (flags, raw, stream) => {
    const st = stream as ServerHttp2Stream;
    st.on("error", () => undefined);
    const started = performance.now();
    const event = (e: Partial<GatewayEvent> & { status: number }): void =>
      deps.onEvent({
        listener,
        client,
        httpVersion: "HTTP/2",
        latencyMs: +(performance.now() - started).toFixed(3),
        ...e,
      });
    try {
      serveStream(st, flags, raw, deps, client.address, event);
    } catch (e) {
      // A bug resets this stream, never the process or the session's other streams.
      event({ status: 500, reason: `internal error: ${e instanceof Error ? e.message : String(e)}` });
      if (!st.destroyed) st.close(constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
}

function serveStream(
  st: ServerHttp2Stream,
  flags: number,
  raw: readonly string[],
  deps: H2GatewayDeps,
  peer: string,
  event: (e: Partial<GatewayEvent> & { status: number }) => void,
): void {
  const parsed = parseRequestHeaders(raw);
  if (!parsed.ok) {
    event({ status: 400, reason: parsed.reason });
    return void st.close(constants.NGHTTP2_PROTOCOL_ERROR);
  }
  const req = parsed.req;
  const what = { method: req.method, url: `${req.authority}${req.path}` };
  const reply = (status: number, reason: string, extra: Partial<GatewayEvent> = {}): void => {
    localReply(st, { grpc: req.grpc, head: req.method === "HEAD", status, body: `${reason}\n` });
    st.resume();
    event({ ...what, status, reason, ...extra });
  };
  const port = deps.port();
  if (!port) return reply(503, "listener no longer served");
  const headers = Object.entries(req.headers).map(([name, value]) => ({ name, value }));
  const d = decide(
    port,
    { method: req.method, target: req.path, host: req.authority, headers, grpc: req.grpc, ...serverName(st) },
    deps.random,
  );
  if (d.kind === "not-found") return reply(404, "no route matched");
  if (d.kind === "misdirected") return reply(421, "the TLS server name chose another listener");
  const route = { route: d.rule.route };
  if (d.kind === "redirect") {
    st.respond({ ":status": d.status, location: d.location }, { endStream: true });
    return event({ ...what, ...route, status: d.status });
  }
  // GRPCRoute: a rule whose backendRefs are all invalid answers UNAVAILABLE (gRPC 14, from 503).
  if (d.kind === "error") return reply(req.grpc && d.rule.grpc ? 503 : 500, d.reason, route);
  const b = d.backend;
  const address = pick(deps, b);
  const service = `${b.namespace}/${b.name}`;
  if (address === OWN_LISTENER) return reply(req.grpc && d.rule.grpc ? 503 : 500, ownListenerReason(service, b.port), route); // prettier-ignore
  if (typeof address !== "string") return reply(503, `no endpoint of ${service}`, route);
  const backend = { backend: { service, address, port: b.port } };
  const fwd: Record<string, string> = {};
  for (const h of d.request.headers) {
    const k = h.name.toLowerCase();
    if (k === "host") continue;
    fwd[k] = fwd[k] === undefined ? h.value : `${fwd[k]}, ${h.value}`;
  }
  if (fwd["x-forwarded-for"] === undefined) fwd["x-forwarded-for"] = peer;
  fwd["x-forwarded-proto"] = port.protocol === "HTTPS" ? "https" : "http";
  const authority = d.request.host ?? req.authority;
  const mods = d.responseHeaders;
  const responseHeaders = mods.length > 0 ? (h: OutgoingHttpHeaders) => modifyResponse(h, mods) : undefined;
  const endStream = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
  for (const m of d.mirrors) {
    const at = pick(deps, m);
    if (typeof at !== "string") continue;
    mirrorStream({
      down: st,
      endStream,
      h2c: m.h2c === true,
      address: at,
      port: m.port,
      method: req.method,
      path: d.request.target,
      authority,
      headers: fwd,
      sessions: deps.sessions,
      agent: deps.agent,
      ...sourcesOf(deps),
    });
  }
  const done = (o: { status?: number; reason?: string }): void =>
    event({
      ...what,
      ...route,
      ...backend,
      status: o.status ?? 0,
      ...(o.reason ? { reason: o.reason } : {}),
    });
  // The route's timeouts from here (the stream's body, if any, still arriving counts in).
  const t = d.rule.timeouts;
  const limitMs = attemptLimitMs(
    t,
    t?.requestMs ? performance.now() + t.requestMs : undefined,
    performance.now(),
  );
  const limit = limitMs !== undefined ? { limitMs } : {};
  if (b.h2c) {
    new H2Exchange({
      down: st,
      req: { ...req, scheme: "http", authority, headers: fwd },
      path: d.request.target,
      endStream,
      maxBufferedBody: 64 * 1024,
      upstream: () => deps.sessions.get(address, b.port),
      done,
      ...(responseHeaders ? { responseHeaders } : {}),
      ...limit,
    }).start();
    return;
  }
  bridgeToHttp1({
    down: st,
    method: req.method,
    path: d.request.target,
    authority,
    headers: fwd,
    endStream,
    grpc: req.grpc,
    address,
    port: b.port,
    agent: deps.agent,
    ...sourcesOf(deps),
    ...(responseHeaders ? { responseHeaders } : {}),
    ...limit,
    done,
  });
}

/** An endpoint of the backend for this one request (per-request balancing), never the gateway's own listener. */
function pick(deps: H2GatewayDeps, b: BackendTarget): EndpointPick {
  const all = deps.endpoints(b.namespace, b.name);
  return pickEndpoint(all, b.port, deps.own, deps.random ?? Math.random);
}

function modifyResponse(h: OutgoingHttpHeaders, mods: readonly HeaderModifier[]): OutgoingHttpHeaders {
  const status = h[":status"];
  let fields = Object.entries(h)
    .filter(([k, v]) => k !== ":status" && v !== undefined)
    .map(([name, v]) => ({ name, value: Array.isArray(v) ? v.join(", ") : String(v) }));
  for (const m of mods) fields = modifyHeaders(fields, m);
  const out: OutgoingHttpHeaders = { ":status": status };
  for (const f of fields) {
    const k = f.name.toLowerCase();
    out[k] = out[k] === undefined ? f.value : `${String(out[k])}, ${f.value}`;
  }
  return out;
}

/** The TLS server name of the stream's connection (HTTPS; "" without SNI), for the 421 check. */
function serverName(st: ServerHttp2Stream): { sni?: string } {
  const sock = st.session?.socket as Partial<TLSSocket> | undefined;
  if (sock?.encrypted !== true) return {};
  return { sni: typeof sock.servername === "string" ? sock.servername : "" };
}
