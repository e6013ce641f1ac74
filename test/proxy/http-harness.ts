/**
 * Real sockets on 127.0.0.1 for the HTTP proxy tests: a node:http upstream
 * that records what reached it, the proxy on its own listener, raw clients.
 */
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { handleHttpConnection, type HttpProxyLimits } from "../../src/proxy/http/proxy.js";
import { sniffHttp2 } from "../../src/proxy/http2/preface.js";
import type { ConnectionInfo, L7Event, L7LookupResult, L7PolicyLookup } from "../../src/proxy/types.js";
import type { HttpRule } from "../../src/policy/types.js";
import type { HttpRequestLike } from "../../src/policy/l7/http.js";
import type { L7Spec } from "../../src/policy/mapstate.js";

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
}

export function httpSpec(rules: HttpRule[]): L7Spec {
  return { parser: "http", http: rules, dns: [], kafka: [], serverNames: [] };
}

export interface Harness {
  port: number;
  upstreamPort: number;
  seen: Seen[];
  events: L7Event[];
  /** Each allowed request as the policy judged it. */
  judged: HttpRequestLike[];
  /**
   * The differential check (issue 9): every request the upstream received
   * equals, in method, path, Host and every header field (repeats joined),
   * a distinct request the policy judged and allowed. Also run by close().
   */
  assertUpstreamSawWhatWasJudged(): void;
  /**
   * Bytes upstream received, over all its connections, once every byte already sent has been
   * read (counted at upstream: the proxy may write natively, past net.Socket#write).
   */
  upstreamBytes(): Promise<number>;
  upstreamConnections(): number;
  setPolicy(p: L7LookupResult | undefined): void;
  close(): Promise<void>;
}

export async function startHarness(params: {
  rules?: HttpRule[];
  allowAll?: boolean;
  limits?: Partial<HttpProxyLimits>;
  /** The proxy's socket I/O (default: native when the addon is built). */
  io?: "native" | "stream";
  /** As the proxy process does (dispatch.ts): first bytes read to tell HTTP/2, given back, then HTTP/1.1. */
  sniff?: boolean;
  /** Replace the node:http upstream by a raw TCP one. */
  rawUpstream?: (s: net.Socket) => void;
  upstreamPort?: number;
  /** Original destination port given to the proxy (default: the upstream's). */
  dstPort?: number;
}): Promise<Harness> {
  const seen: Seen[] = [];
  const events: L7Event[] = [];
  const judged: HttpRequestLike[] = [];
  let bytes = 0;
  let conns = 0;
  const upSockets = new Set<net.Socket>();
  let policy: L7LookupResult | undefined = {
    spec: httpSpec(params.rules ?? [{ path: "/public/.*", headers: [] }]),
    allowAll: params.allowAll ?? false,
  };
  const upstream = params.rawUpstream
    ? net.createServer(params.rawUpstream)
    : http.createServer((req, res) => {
        const chunks: Buffer[] = [];
        req.on("data", (c: Buffer) => chunks.push(c));
        req.on("end", () => {
          const body = Buffer.concat(chunks).toString("latin1");
          seen.push({
            method: req.method ?? "",
            url: req.url ?? "",
            headers: req.headers,
            rawHeaders: req.rawHeaders,
            body,
          });
          const out = `ok ${req.method} ${req.url} ${body.length}`;
          res.writeHead(200, { "content-type": "text/plain", "content-length": Buffer.byteLength(out) });
          res.end(req.method === "HEAD" ? undefined : out);
        });
      });
  upstream.on("connection", (s: net.Socket) => {
    upSockets.add(s);
    s.on("close", () => {
      bytes += s.bytesRead;
      upSockets.delete(s);
    });
  });
  await new Promise<void>((r) => upstream.listen(params.upstreamPort ?? 0, "127.0.0.1", r));
  const upstreamPort = (upstream.address() as AddressInfo).port;
  const lookup: L7PolicyLookup = { forConnection: () => policy };
  const proxy = net.createServer({ allowHalfOpen: true }, (sock) => {
    const info: ConnectionInfo = {
      srcIdentity: 1001,
      dstIdentity: 2002,
      direction: "ingress",
      endpoint: "default/web",
      originalDst: { host: "127.0.0.1", port: params.dstPort ?? upstreamPort },
      proto: "TCP",
    };
    const handle = (): void =>
      handleHttpConnection(sock, info, {
        lookup,
        sink: (e) => events.push(e),
        onJudged: (j) => judged.push(j),
        ...(params.limits ? { limits: params.limits } : {}),
        ...(params.io ? { io: params.io } : {}),
        connectUpstream: (host, port) => {
          conns++;
          return net.connect(port, host);
        },
      });
    if (!params.sniff) return handle();
    sniffHttp2(sock, (_h2, head) => {
      sock.unshift(head);
      handle();
    });
  });
  await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
  const port = (proxy.address() as AddressInfo).port;
  return {
    port,
    upstreamPort,
    seen,
    events,
    judged,
    assertUpstreamSawWhatWasJudged: () => assertSameView(seen, judged),
    upstreamBytes: async () => {
      // Loopback delivers a write at once: two turns of the loop and upstream has read it.
      for (let i = 0; i < 2; i++) await new Promise((r) => setImmediate(r));
      let n = bytes;
      for (const s of upSockets) n += s.bytesRead;
      return n;
    },
    upstreamConnections: () => conns,
    setPolicy: (p) => (policy = p),
    close: async () => {
      try {
        assertSameView(seen, judged);
      } finally {
        if ("closeAllConnections" in upstream) upstream.closeAllConnections();
        await Promise.all([new Promise((r) => proxy.close(r)), new Promise((r) => upstream.close(r))]);
      }
    },
  };
}

/** What a rule can name, as upstream received it: repeated fields joined with ", " (RFC 9110 §5.3). */
export function upstreamView(s: Seen): HttpRequestLike {
  const headers = Object.create(null) as Record<string, string>;
  for (let i = 0; i + 1 < s.rawHeaders.length; i += 2) {
    const name = (s.rawHeaders[i] as string).toLowerCase();
    const value = s.rawHeaders[i + 1] as string;
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { method: s.method, path: s.url, ...("host" in headers ? { host: headers["host"] } : {}), headers };
}

function canonical(r: HttpRequestLike): string {
  const headers = Object.entries(r.headers ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([r.method, r.path, r.host ?? null, headers]);
}

function assertSameView(seen: readonly Seen[], judged: readonly HttpRequestLike[]): void {
  const left = judged.map(canonical);
  for (const s of seen) {
    const v = canonical(upstreamView(s));
    const i = left.indexOf(v);
    if (i < 0) {
      throw new Error(
        `upstream received a request that was not judged:\n  received ${v}\n  judged   ${JSON.stringify(left)}`,
      );
    }
    left.splice(i, 1);
  }
}

export interface RawResult {
  /** Everything the client received until the proxy closed (or `until` matched). */
  text: string;
  closed: boolean;
  reset: boolean;
}

/**
 * Sends `data` (pieces written with a small pause between them) and collects
 * the answer until the connection closes, `until` returns true, or timeout.
 */
export function rawExchange(
  port: number,
  data: string | Buffer | (string | Buffer)[],
  opts: { until?: (text: string) => boolean; end?: boolean; timeoutMs?: number } = {},
): Promise<RawResult> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    let done = false;
    let reset = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      resolve({ text, closed, reset });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 3000);
    s.on("data", (d: Buffer) => {
      text += d.toString("latin1");
      if (opts.until?.(text)) finish(false);
    });
    s.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNRESET") reset = true;
      finish(true);
    });
    s.on("end", () => finish(true));
    const pieces = Array.isArray(data) ? data : [data];
    void (async () => {
      for (const p of pieces) {
        if (s.destroyed) return;
        s.write(typeof p === "string" ? Buffer.from(p, "latin1") : p);
        if (pieces.length > 1) await new Promise((r) => setTimeout(r, 15));
      }
      if (opts.end) s.end();
    })();
  });
}

/** Status codes of the responses in `text`, in order (responses carry Content-Length). */
export function statuses(text: string): number[] {
  const out: number[] = [];
  let rest = text;
  for (;;) {
    const m = /^HTTP\/1\.1 (\d{3})[^\r]*\r\n([\s\S]*?)\r\n\r\n/.exec(rest);
    if (!m) return out;
    out.push(Number(m[1]));
    const cl = /content-length: *(\d+)/i.exec(m[2] as string);
    rest = rest.slice(m[0].length + (cl ? Number(cl[1]) : 0));
  }
}

export function countResponses(n: number): (t: string) => boolean {
  return (t) => statuses(t).length >= n;
}
