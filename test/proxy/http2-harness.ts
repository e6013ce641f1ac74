/**
 * Real sockets on 127.0.0.1 for the HTTP/2 proxy tests: a node:http2
 * upstream that records what reached it, the proxy on its own net.Server,
 * node:http2 clients, and a raw frame writer for what node's client refuses
 * to send.
 */
import http2, { constants, type ClientHttp2Session, type OutgoingHttpHeaders } from "node:http2";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { handleHttp2Connection, looksLikeHttp2, type Http2ProxyLimits } from "../../src/proxy/http2/proxy.js";
import type { ConnectionInfo, L7Event, L7LookupResult, L7PolicyLookup } from "../../src/proxy/types.js";
import type { HttpRule } from "../../src/policy/types.js";
import type { L7Spec } from "../../src/policy/mapstate.js";

export function httpSpec(rules: HttpRule[]): L7Spec {
  return { parser: "http", http: rules, dns: [], kafka: [], serverNames: [] };
}

export function policyOf(rules: HttpRule[], also?: L7LookupResult): L7LookupResult {
  return { spec: httpSpec(rules), allowAll: false, ...(also ? { also } : {}) };
}

export interface UpstreamSeen {
  method: string;
  path: string;
  authority: string;
  raw: string[];
  body: Buffer;
  trailers: string[];
  /** RST code of the stream as upstream saw it close (0: clean). */
  rstCode: number | undefined;
  /** The stream was reset (node's 'aborted'). */
  aborted: boolean;
  /** The request's END_STREAM arrived (before any reset). */
  complete: boolean;
}

export const INFO: ConnectionInfo = {
  srcIdentity: 1001,
  dstIdentity: 2002,
  direction: "ingress",
  endpoint: "default/web",
  originalDst: { host: "127.0.0.1", port: 0 },
  proto: "TCP",
};

/** gRPC message framing: 1 byte compressed flag, 4 bytes length, payload. */
export function grpcFrame(payload: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(payload.length, 1);
  return Buffer.concat([h, payload]);
}

export interface H2Harness {
  port: number;
  seen: UpstreamSeen[];
  events: L7Event[];
  upstreamConnections(): number;
  setPolicy(p: L7LookupResult | undefined): void;
  setLookup(f: () => L7LookupResult | undefined): void;
  client(): ClientHttp2Session;
  close(): Promise<void>;
}

/**
 * The upstream answers by path: `/reset/<code>` resets the stream with that
 * code, `/slow` answers after 300 ms, `/big/<n>` sends n bytes; gRPC
 * requests get their message echoed and `grpc-status: 0`; anything else
 * gets 200 "ok METHOD PATH BODYLEN".
 */
export async function startH2Harness(
  params: {
    policy?: L7LookupResult;
    limits?: Partial<Http2ProxyLimits>;
    /** Sniff the preface in the accept handler and pass what was read as `head`. */
    sniff?: boolean;
    /** Original destination port (default: the upstream's). */
    dstPort?: number;
  } = {},
): Promise<H2Harness> {
  const seen: UpstreamSeen[] = [];
  const events: L7Event[] = [];
  const sessions: ClientHttp2Session[] = [];
  let conns = 0;
  let lookupFn: () => L7LookupResult | undefined;
  let policy: L7LookupResult | undefined = params.policy ?? policyOf([{ path: "/public/.*", headers: [] }]);
  lookupFn = () => policy;
  const upstream = http2.createServer();
  upstream.on("session", (s) => s.on("error", () => {}));
  upstream.on("stream", (...args: unknown[]) => {
    const stream = args[0] as http2.ServerHttp2Stream;
    const raw = (args[3] as string[]) ?? [];
    const get = (n: string): string => raw[raw.indexOf(n) + 1] ?? "";
    const rec: UpstreamSeen = {
      method: get(":method"),
      path: get(":path"),
      authority: get(":authority"),
      raw,
      body: Buffer.alloc(0),
      trailers: [],
      rstCode: undefined,
      aborted: false,
      complete: false,
    };
    seen.push(rec);
    const chunks: Buffer[] = [];
    stream.on("error", () => {});
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("trailers", (...t: unknown[]) => (rec.trailers = (t[2] as string[]) ?? []));
    stream.on("aborted", () => (rec.aborted = true));
    stream.on("close", () => {
      rec.rstCode = stream.rstCode;
      if (!rec.body.length) rec.body = Buffer.concat(chunks);
    });
    const reset = /^\/reset\/(\d+)$/.exec(rec.path);
    if (reset) return stream.close(Number(reset[1]));
    stream.on("end", () => {
      rec.complete = !stream.aborted && !stream.closed;
      rec.body = Buffer.concat(chunks);
      if (stream.destroyed || rec.aborted) return;
      if (get("content-type").startsWith("application/grpc")) {
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "" }));
        stream.end(grpcFrame(Buffer.from(`echo:${rec.body.subarray(5).toString()}`)));
        return;
      }
      const big = /^\/public\/big\/(\d+)$/.exec(rec.path);
      if (big) {
        stream.respond({ ":status": 200 });
        stream.end(Buffer.alloc(Number(big[1]), 0x61));
        return;
      }
      const answer = (): void => {
        if (stream.destroyed) return;
        const out = `ok ${rec.method} ${rec.path} ${rec.body.length}`;
        stream.respond({ ":status": 200, "content-type": "text/plain", "x-upstream": "yes" });
        stream.end(rec.method === "HEAD" ? undefined : out);
      };
      if (rec.path.startsWith("/public/slow")) setTimeout(answer, 300);
      else answer();
    });
  });
  await new Promise<void>((r) => upstream.listen(0, "127.0.0.1", r));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const lookup: L7PolicyLookup = { forConnection: () => lookupFn() };
  const info: ConnectionInfo = {
    ...INFO,
    originalDst: { host: "127.0.0.1", port: params.dstPort ?? upstreamPort },
  };
  const deps = {
    lookup,
    sink: (e: L7Event) => events.push(e),
    ...(params.limits ? { limits: params.limits } : {}),
    connectUpstream: (host: string, port: number) => {
      conns++;
      return net.connect(port, host);
    },
  };
  const proxy = net.createServer((sock) => {
    if (!params.sniff) return handleHttp2Connection(sock, info, deps);
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      const v = looksLikeHttp2(got);
      if (v === "need-more") return;
      sock.off("data", onData);
      sock.pause();
      if (v === "no") return void sock.destroy();
      handleHttp2Connection(sock, info, deps, got);
    };
    sock.on("data", onData);
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as AddressInfo).port;
  return {
    port,
    seen,
    events,
    upstreamConnections: () => conns,
    setPolicy: (p) => {
      policy = p;
      lookupFn = () => policy;
    },
    setLookup: (f) => (lookupFn = f),
    client: () => {
      const c = http2.connect(`http://127.0.0.1:${port}`);
      c.on("error", () => {});
      sessions.push(c);
      return c;
    },
    close: async () => {
      for (const s of sessions) s.destroy();
      await Promise.all([new Promise((r) => proxy.close(r)), new Promise((r) => upstream.close(r))]);
    },
  };
}

export interface H2Response {
  status: number | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  trailers: Record<string, string | string[] | undefined> | undefined;
  rstCode: number;
  /** The response was HEADERS with END_STREAM (trailers-only). */
  headersEnded: boolean;
}

/** One request on `session`; resolves when the stream closes, whatever happened. */
export function h2request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: Buffer | string | (Buffer | string)[],
  opts: { trailers?: OutgoingHttpHeaders } = {},
): Promise<H2Response> {
  return new Promise((resolve) => {
    const pieces = body === undefined ? [] : Array.isArray(body) ? body : [body];
    const endStream = pieces.length === 0 && !opts.trailers;
    const s = session.request(headers, endStream ? { endStream: true } : { waitForTrailers: true });
    const out: H2Response = {
      status: undefined,
      headers: {},
      body: Buffer.alloc(0),
      trailers: undefined,
      rstCode: 0,
      headersEnded: false,
    };
    const chunks: Buffer[] = [];
    s.on("error", () => {});
    s.on("response", (h, flags) => {
      out.status = Number(h[":status"]);
      out.headers = { ...h };
      out.headersEnded = (flags & constants.NGHTTP2_FLAG_END_STREAM) !== 0;
    });
    s.on("data", (c: Buffer) => chunks.push(c));
    s.on("trailers", (t) => (out.trailers = { ...t }));
    s.on("wantTrailers", () => s.sendTrailers(opts.trailers ?? {}));
    s.on("close", () => {
      out.body = Buffer.concat(chunks);
      out.rstCode = s.rstCode;
      resolve(out);
    });
    if (!endStream) {
      for (const p of pieces) s.write(p);
      s.end();
    }
  });
}

/** Minimal HPACK: literal header fields without indexing, no Huffman. */
function hpackInt(n: number, prefixBits: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (n < max) return [n];
  const out = [max];
  let rest = n - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

export function hpackLiteral(fields: [string, string][]): Buffer {
  const b: number[] = [];
  for (const [k, v] of fields) {
    const kb = Buffer.from(k, "latin1");
    const vb = Buffer.from(v, "latin1");
    b.push(0x00, ...hpackInt(kb.length, 7), ...kb, ...hpackInt(vb.length, 7), ...vb);
  }
  return Buffer.from(b);
}

export function h2frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(streamId, 5);
  return Buffer.concat([h, payload]);
}

export interface RawFrame {
  type: number;
  flags: number;
  streamId: number;
  payload: Buffer;
}

/**
 * Sends the preface, an empty SETTINGS frame and `frames`, then collects
 * the frames the proxy sends until `until` holds (or `ms` milliseconds).
 */
export function rawH2(
  port: number,
  frames: Buffer[],
  until: (got: RawFrame[]) => boolean,
  ms = 3000,
): Promise<RawFrame[]> {
  return new Promise((resolve) => {
    const out: RawFrame[] = [];
    let buf = Buffer.alloc(0);
    const s = net.connect(port, "127.0.0.1", () => {
      s.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
          h2frame(4, 0, 0, Buffer.alloc(0)),
          ...frames,
        ]),
      );
    });
    s.on("error", () => {});
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        out.push({
          type: buf[3] as number,
          flags: buf[4] as number,
          streamId: buf.readUInt32BE(5) & 0x7fffffff,
          payload: buf.subarray(9, 9 + len),
        });
        buf = buf.subarray(9 + len);
      }
      if (until(out)) done();
    });
    const done = (): void => {
      clearTimeout(timer);
      s.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, ms);
  });
}

/** RST_STREAM error codes the proxy sent, by stream id. */
export function resets(frames: RawFrame[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const f of frames) if (f.type === 3) m.set(f.streamId, f.payload.readUInt32BE(0));
  return m;
}
