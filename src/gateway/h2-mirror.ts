/**
 * RequestMirror for an HTTP/2 client stream: a copy of the request (the
 * forwarded head, the body as it arrives) goes to an endpoint of the mirror
 * backend over HTTP/2 (h2c backend) or HTTP/1.1; its response is read and
 * dropped. The client's exchange never waits for the mirror: a mirror that
 * falls more than MAX_BEHIND bytes behind is cancelled.
 *
 *   down stream --data--> main exchange
 *               --data--> mirror request (bounded) --> response discarded
 */
import http from "node:http";
import { constants, type ServerHttp2Stream } from "node:http2";
import type { Writable } from "node:stream";
import type { H2Sessions } from "../proxy/http2/sessions.js";
import { sourceFor } from "./source.js";

const MAX_BEHIND = 1024 * 1024;

export interface MirrorParams {
  readonly down: ServerHttp2Stream;
  readonly endStream: boolean;
  readonly h2c: boolean;
  readonly address: string;
  readonly port: number;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  /** Lower-case names, no pseudo-headers, no `host`. */
  readonly headers: Readonly<Record<string, string>>;
  readonly sessions: H2Sessions;
  readonly agent: http.Agent;
  readonly localAddress?: string;
  readonly localAddress6?: string;
}

export function mirrorStream(p: MirrorParams): void {
  let out: Writable & { destroyed: boolean };
  if (p.h2c) {
    const s = p.sessions
      .get(p.address, p.port)
      .request(
        { ...p.headers, ":method": p.method, ":path": p.path, ":scheme": "http", ":authority": p.authority },
        p.endStream ? { endStream: true } : {},
      );
    s.on("response", () => s.resume());
    s.on("error", () => undefined);
    out = s;
  } else {
    const headers: Record<string, string> = { ...p.headers, host: p.authority };
    delete headers["te"];
    const q = http.request({
      host: p.address,
      port: p.port,
      method: p.method,
      path: p.path,
      headers,
      agent: p.agent,
      setHost: false,
      ...sourceFor(p.address, p),
    });
    q.on("response", (res) => res.resume());
    q.on("error", () => undefined);
    q.setTimeout(10_000, () => q.destroy());
    if (p.endStream) q.end();
    out = q;
  }
  if (p.endStream) return;
  const cancel = (): void => {
    if (!out.destroyed) out.destroy();
  };
  p.down.on("data", (c: Buffer) => {
    if (out.destroyed) return;
    if (out.writableLength > MAX_BEHIND) return cancel();
    out.write(c);
  });
  p.down.on("end", () => {
    if (!out.destroyed) out.end();
  });
  p.down.on("close", () => {
    if (p.down.rstCode !== undefined && p.down.rstCode !== constants.NGHTTP2_NO_ERROR) cancel();
  });
}
