/**
 * One HTTP/2 client stream forwarded to an HTTP/1.1 backend (a Service port
 * without an HTTP/2 appProtocol): the request head and body go out with
 * node:http over a kept-alive connection from the gateway's address; the
 * response head comes back as HTTP/2 fields (connection-specific ones
 * dropped, the route's ResponseHeaderModifier applied), its body streamed
 * with backpressure both ways. A backend failure before the head: 502; after
 * it: the stream is reset. The route's timeouts (`limitMs`) exceeded: 504
 * before the head, a reset after it, and the backend connection closed.
 */
import http from "node:http";
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { BAD_GATEWAY_BODY, localReply } from "../proxy/http2/replies.js";
import { sourceFor } from "./source.js";

const HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

export interface H1BridgeParams {
  readonly down: ServerHttp2Stream;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Lower-case names, no pseudo-headers, no `host`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly endStream: boolean;
  readonly grpc: boolean;
  readonly address: string;
  readonly port: number;
  readonly agent: http.Agent;
  readonly localAddress?: string;
  readonly localAddress6?: string;
  readonly responseHeaders?: (h: OutgoingHttpHeaders) => OutgoingHttpHeaders;
  /** The route's timeouts for this request (timeouts.ts); absent: none. */
  readonly limitMs?: number;
  /** Once, when the client stream closed. */
  readonly done: (o: { status: number; reason?: string }) => void;
}

export function bridgeToHttp1(p: H1BridgeParams): void {
  const { down } = p;
  let status = 0;
  let reason: string | undefined;
  const headers: Record<string, string> = { ...p.headers, host: p.authority };
  delete headers["te"];
  const up = http.request({
    host: p.address,
    port: p.port,
    method: p.method,
    path: p.path,
    headers,
    agent: p.agent,
    setHost: false,
    ...sourceFor(p.address, p),
  });
  up.setTimeout(60_000, () => up.destroy(new Error("backend idle for 60 s")));
  let expired = false;
  const cut =
    p.limitMs === undefined
      ? undefined
      : setTimeout(() => {
          expired = true;
          up.destroy(new Error("the route's timeouts were exceeded"));
        }, p.limitMs);
  up.on("error", (e) => {
    reason = `backend: ${e.message}`;
    if (!down.headersSent) {
      status = expired ? 504 : 502;
      const body = expired ? "Gateway Timeout\r\n" : BAD_GATEWAY_BODY;
      localReply(down, { grpc: p.grpc, head: p.method === "HEAD", status, body });
    } else if (!down.destroyed) down.close(constants.NGHTTP2_INTERNAL_ERROR);
  });
  up.on("response", (res) => {
    status = res.statusCode ?? 502;
    const h: OutgoingHttpHeaders = { ":status": status };
    for (const [k, v] of Object.entries(res.headers)) if (!HOP.has(k) && v !== undefined) h[k] = v;
    if (down.destroyed) return void res.destroy();
    try {
      down.respond(p.responseHeaders ? p.responseHeaders(h) : h);
    } catch (e) {
      reason = `invalid backend response: ${e instanceof Error ? e.message : String(e)}`;
      res.destroy();
      return void down.close(constants.NGHTTP2_INTERNAL_ERROR);
    }
    res.on("data", (c: Buffer) => {
      if (!down.write(c)) {
        res.pause();
        down.once("drain", () => res.resume());
      }
    });
    res.on("end", () => down.end());
    res.on("error", () => down.close(constants.NGHTTP2_INTERNAL_ERROR));
  });
  if (p.endStream) up.end();
  else {
    down.on("data", (c: Buffer) => {
      if (!up.write(c)) {
        down.pause();
        up.once("drain", () => down.resume());
      }
    });
    down.on("end", () => up.end());
  }
  down.on("close", () => {
    clearTimeout(cut);
    if (!up.destroyed && status === 0) up.destroy();
    p.done({ status, ...(reason !== undefined ? { reason } : {}) });
  });
}
