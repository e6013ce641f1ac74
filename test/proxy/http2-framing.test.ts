import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import type { AddressInfo } from "node:net";
import type { OutgoingHttpHeaders } from "node:http2";
import { parseRequestHeaders, type H2RequestParse } from "../../src/proxy/http2/headers.js";
import { HTTP2_PREFACE, looksLikeHttp2 } from "../../src/proxy/http2/proxy.js";
import {
  h2frame,
  h2request,
  hpackLiteral,
  rawH2,
  resets,
  startH2Harness,
  type H2Harness,
} from "./http2-harness.js";

const PROTOCOL_ERROR = 1;
const REFUSED_STREAM = 7;
const CANCEL = 8;
const ENHANCE_YOUR_CALM = 11;
const FRAMING = "content-length disagrees with the DATA received";

async function withHarness(
  params: Parameters<typeof startH2Harness>[0],
  f: (h: H2Harness) => Promise<void>,
): Promise<void> {
  const h = await startH2Harness(params);
  try {
    await f(h);
  } finally {
    await h.close();
  }
}

const req = (method: string, path: string, extra: OutgoingHttpHeaders = {}): OutgoingHttpHeaders => ({
  ":method": method,
  ":path": path,
  ":authority": "svc.local",
  ...extra,
});

const waitFor = async (cond: () => boolean, ms = 2000): Promise<void> => {
  const until = Date.now() + ms;
  while (!cond() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
};

describe("looksLikeHttp2", () => {
  const P = HTTP2_PREFACE.toString("latin1");
  const cases: { name: string; input: string; want: "yes" | "no" | "need-more" }[] = [
    { name: "the whole preface is HTTP/2", input: P, want: "yes" },
    {
      name: "the preface followed by a SETTINGS frame is HTTP/2",
      input: P + "\0\0\0\x04\0\0\0\0\0",
      want: "yes",
    },
    { name: "nothing yet needs more", input: "", want: "need-more" },
    { name: "a proper prefix needs more", input: "PRI * HTTP/2", want: "need-more" },
    { name: "an HTTP/1.1 request line is not HTTP/2", input: "GET / HTTP/1.1\r\n", want: "no" },
    { name: "PRI with another version is not HTTP/2", input: "PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n", want: "no" },
    { name: "one differing byte early decides at once", input: "PRX", want: "no" },
    { name: "a TLS ClientHello is not h2c", input: "\x16\x03\x01\x02\x00", want: "no" },
  ];
  for (const c of cases)
    test(c.name, () => assert.equal(looksLikeHttp2(Buffer.from(c.input, "latin1")), c.want));
});

describe("parseRequestHeaders (checked even where nghttp2 already refuses)", () => {
  const base = [":method", "GET", ":path", "/a", ":scheme", "http", ":authority", "svc"];
  const bad = (raw: string[]): string | undefined => {
    const r: H2RequestParse = parseRequestHeaders(raw);
    return r.ok ? undefined : r.reason;
  };
  const rejected: { name: string; raw: string[]; reason: string }[] = [
    {
      name: "connection header",
      raw: [...base, "connection", "close"],
      reason: "connection-specific header connection",
    },
    {
      name: "keep-alive",
      raw: [...base, "keep-alive", "1"],
      reason: "connection-specific header keep-alive",
    },
    { name: "upgrade", raw: [...base, "upgrade", "h2c"], reason: "connection-specific header upgrade" },
    {
      name: "transfer-encoding",
      raw: [...base, "transfer-encoding", "chunked"],
      reason: "connection-specific header transfer-encoding",
    },
    { name: "te other than trailers", raw: [...base, "te", "gzip"], reason: "te other than trailers" },
    {
      name: "conflicting content-lengths",
      raw: [...base, "content-length", "1", "content-length", "2"],
      reason: "invalid or conflicting content-length",
    },
    {
      name: "non-numeric content-length",
      raw: [...base, "content-length", "1e3"],
      reason: "invalid or conflicting content-length",
    },
    { name: "upper-case name", raw: [...base, "X-A", "1"], reason: 'invalid header name "X-A"' },
    {
      name: "CR in a value",
      raw: [...base, "x-a", "1\r\nx-b: 2"],
      reason: "header x-a has a NUL, CR or LF in its value",
    },
    {
      name: "unknown pseudo-header",
      raw: [...base, ":protocol", "websocket"],
      reason: "unknown pseudo-header :protocol",
    },
    { name: "repeated pseudo-header", raw: [...base, ":path", "/b"], reason: "repeated pseudo-header :path" },
    {
      name: "pseudo-header after a regular one",
      raw: [":method", "GET", "x-a", "1", ":path", "/a", ":scheme", "http", ":authority", "svc"],
      reason: "pseudo-header :path after a regular header",
    },
    {
      name: "CONNECT",
      raw: [":method", "CONNECT", ":authority", "svc:443"],
      reason: "CONNECT is not supported",
    },
    {
      name: "no :path",
      raw: [":method", "GET", ":scheme", "http", ":authority", "svc"],
      reason: "missing :path or :scheme",
    },
    {
      name: "relative :path",
      raw: [":method", "GET", ":path", "a", ":scheme", "http", ":authority", "svc"],
      reason: "invalid :path",
    },
    {
      name: "no authority at all",
      raw: [":method", "GET", ":path", "/a", ":scheme", "http"],
      reason: "missing :authority",
    },
    {
      name: "host differing from :authority",
      raw: [...base, "host", "other"],
      reason: "host header differs from :authority",
    },
  ];
  for (const c of rejected) test(`rejects ${c.name}`, () => assert.equal(bad(c.raw), c.reason));

  test("accepts te: trailers, joins repeated fields (cookie with '; '), takes host when there is no :authority", () => {
    const r = parseRequestHeaders([
      ":method", "POST", ":path", "/p", ":scheme", "http",
      "host", "svc:80", "te", "trailers", "x-a", "1", "x-a", "2", "cookie", "a=1", "cookie", "b=2",
      "content-type", "application/grpc+proto", "content-length", "3", "content-length", "3",
    ]); // prettier-ignore
    assert.deepEqual(r, {
      ok: true,
      req: {
        method: "POST",
        path: "/p",
        scheme: "http",
        authority: "svc:80",
        headers: {
          te: "trailers",
          "x-a": "1, 2",
          cookie: "a=1; b=2",
          "content-type": "application/grpc+proto",
          "content-length": "3",
        },
        contentLength: 3,
        grpc: true,
      },
    });
  });
});

describe("HTTP/2 proxy: ambiguous framing is a stream error, never forwarded", () => {
  const hdrs = (extra: [string, string][]): Buffer =>
    hpackLiteral([
      [":method", "GET"],
      [":path", "/public/a"],
      [":scheme", "http"],
      [":authority", "svc"],
      ...extra,
    ]);
  const cases: { name: string; extra: [string, string][] }[] = [
    { name: "connection: keep-alive", extra: [["connection", "keep-alive"]] },
    // The HTTP/1.1 bypass of issue 9 has no HTTP/2 form: any connection header is refused (RFC 9113 §8.2.2).
    { name: "connection: host", extra: [["connection", "host"]] },
    { name: "keep-alive", extra: [["keep-alive", "timeout=5"]] },
    { name: "proxy-connection", extra: [["proxy-connection", "keep-alive"]] },
    { name: "te: trailers, gzip", extra: [["te", "trailers, gzip"]] },
    { name: "a host header that differs from :authority", extra: [["host", "admin.local"]] },
    { name: "transfer-encoding: chunked", extra: [["transfer-encoding", "chunked"]] },
    { name: "te: gzip", extra: [["te", "gzip"]] },
    { name: "upgrade: h2c", extra: [["upgrade", "h2c"]] },
    {
      name: "two different content-lengths",
      extra: [
        ["content-length", "1"],
        ["content-length", "2"],
      ],
    },
  ];
  for (const c of cases) {
    test(`${c.name}: RST_STREAM PROTOCOL_ERROR, nothing upstream`, () =>
      withHarness({}, async (h) => {
        const frames = await rawH2(h.port, [h2frame(1, 0x5, 1, hdrs(c.extra))], (f) => resets(f).size > 0);
        assert.deepEqual([...resets(frames)], [[1, PROTOCOL_ERROR]]);
        assert.equal(h.seen.length, 0);
        assert.equal(h.upstreamConnections(), 0);
      }));
  }

  test("a well-formed raw request on the same path is forwarded (the raw client is sound)", () =>
    withHarness({}, async (h) => {
      const frames = await rawH2(h.port, [h2frame(1, 0x5, 1, hdrs([["te", "trailers"]]))], (f) =>
        f.some((x) => x.type === 0 && (x.flags & 1) === 1),
      );
      assert.equal(resets(frames).size, 0);
      assert.ok(frames.some((f) => f.type === 1 && f.streamId === 1));
      assert.equal(h.seen[0]?.path, "/public/a");
    }));

  const passedByCodec: { name: string; headers: OutgoingHttpHeaders; reason: string }[] = [
    {
      name: "a Host header naming another authority",
      headers: req("GET", "/public/a", { host: "evil.local" }),
      reason: "host header differs from :authority",
    },
    {
      name: "CONNECT (a tunnel the path rules cannot see into)",
      headers: { ":method": "CONNECT", ":authority": "svc.local:443" },
      reason: "CONNECT is not supported",
    },
  ];
  for (const c of passedByCodec) {
    test(`${c.name}: RST_STREAM PROTOCOL_ERROR from the proxy itself, with an error event`, () =>
      withHarness(
        {
          policy: { spec: { parser: "http", http: [], dns: [], kafka: [], serverNames: [] }, allowAll: true },
        },
        async (h) => {
          const r = await h2request(h.client(), c.headers);
          assert.equal(r.rstCode, PROTOCOL_ERROR);
          assert.equal(h.seen.length, 0);
          assert.deepEqual(
            h.events.map((e) => [e.verdict, e.reason, e.method]),
            [["error", c.reason, undefined]],
          );
        },
      ));
  }

  const bodies: { name: string; cl: number; send: number; upstreamSeen: boolean }[] = [
    { name: "fewer DATA bytes than content-length (held body)", cl: 10, send: 3, upstreamSeen: false },
    { name: "more DATA bytes than content-length (held body)", cl: 3, send: 10, upstreamSeen: false },
    {
      name: "fewer DATA bytes than a streamed content-length: upstream stream cancelled",
      cl: 100,
      send: 50,
      upstreamSeen: true,
    },
  ];
  for (const c of bodies) {
    test(c.name, () =>
      withHarness({ limits: { maxBufferedBody: 64 } }, async (h) => {
        const headers = req("POST", "/public/upload", { "content-length": String(c.cl) });
        const r = await h2request(h.client(), headers, Buffer.alloc(c.send, 0x62));
        assert.equal(r.rstCode, PROTOCOL_ERROR);
        assert.equal(r.status, undefined);
        await waitFor(() => h.events.length > 0 && (!c.upstreamSeen || h.seen[0]?.rstCode !== undefined));
        if (c.upstreamSeen) {
          assert.equal(h.seen.length, 1);
          assert.equal(h.seen[0]?.complete, false, "upstream never sees the request end");
          assert.equal(h.seen[0]?.aborted, true);
          assert.equal(h.seen[0]?.rstCode, CANCEL);
          assert.equal(h.seen[0]?.body.length, 50);
        } else assert.equal(h.seen.length, 0);
        assert.deepEqual(
          h.events.map((e) => [e.verdict, e.reason]),
          [["error", FRAMING]],
        );
      }),
    );
  }
});

describe("HTTP/2 proxy: resets, bodies, upstream failure", () => {
  test("upstream's RST_STREAM reaches the client with the same code", () =>
    withHarness({}, async (h) => {
      const r = await h2request(h.client(), req("GET", `/public/../reset/${ENHANCE_YOUR_CALM}`));
      assert.equal(r.status, 403, "dot-dot resolved before judging");
      h.setPolicy({
        spec: { parser: "http", http: [], dns: [], kafka: [], serverNames: [] },
        allowAll: true,
      });
      const r2 = await h2request(h.client(), req("GET", `/reset/${ENHANCE_YOUR_CALM}`));
      assert.equal(r2.rstCode, ENHANCE_YOUR_CALM);
      assert.equal(r2.status, undefined);
      const e = h.events[1];
      assert.deepEqual([e?.verdict, e?.reason], ["error", "upstream reset the stream (ENHANCE_YOUR_CALM)"]);
    }));

  test("the client's RST_STREAM reaches upstream (CANCEL)", () =>
    withHarness({}, async (h) => {
      const c = h.client();
      const s = c.request(req("GET", "/public/slow/1"), { endStream: true });
      s.on("error", () => {});
      await waitFor(() => h.seen.length === 1);
      s.close(CANCEL);
      await waitFor(() => h.seen[0]?.rstCode !== undefined && h.events.length === 1);
      assert.equal(h.seen[0]?.rstCode, CANCEL);
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.status, e.reason]),
        [["forwarded", undefined, "client reset the stream (CANCEL)"]],
      );
    }));

  test("a client reset in the middle of a streamed body is not turned into the request's end upstream", () =>
    withHarness({}, async (h) => {
      const rst = Buffer.alloc(4);
      rst.writeUInt32BE(CANCEL);
      const headers = hpackLiteral([
        [":method", "POST"],
        [":path", "/public/stream"],
        [":scheme", "http"],
        [":authority", "svc"],
      ]);
      const frames: Buffer[] = [h2frame(1, 0x4, 1, headers), h2frame(0, 0, 1, Buffer.from("abc"))];
      const sock = net.connect(h.port, "127.0.0.1");
      sock.on("error", () => {});
      sock.write(
        Buffer.concat([
          Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
          h2frame(4, 0, 0, Buffer.alloc(0)),
          ...frames,
        ]),
      );
      await waitFor(() => h.seen.length === 1);
      await new Promise((r) => setTimeout(r, 50)); // let "abc" through before the reset
      sock.write(h2frame(3, 0, 1, rst));
      await waitFor(() => h.seen[0]?.rstCode !== undefined && h.events.length === 1);
      sock.destroy();
      assert.equal(h.seen[0]?.complete, false);
      assert.equal(h.seen[0]?.rstCode, CANCEL);
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.reason]),
        [["forwarded", "client reset the stream (CANCEL)"]],
      );
    }));

  test("large bodies pass intact both ways (flow control and backpressure)", () =>
    withHarness({}, async (h) => {
      const up = Buffer.alloc(3_000_000);
      for (let i = 0; i < up.length; i++) up[i] = i % 251;
      const r = await h2request(h.client(), req("POST", "/public/upload"), [
        up.subarray(0, 1_000_000),
        up.subarray(1_000_000),
      ]);
      assert.equal(r.body.toString(), "ok POST /public/upload 3000000");
      assert.ok(h.seen[0]?.body.equals(up));
      const big = await h2request(h.client(), req("GET", "/public/big/5000000"));
      assert.equal(big.status, 200);
      assert.equal(big.body.length, 5_000_000);
      assert.ok(big.body.every((b) => b === 0x61));
    }));

  test("upstream unreachable: 502 for HTTP, grpc-status 14 for gRPC", async () => {
    const free = net.createServer();
    await new Promise<void>((r) => free.listen(0, "127.0.0.1", r));
    const dstPort = (free.address() as AddressInfo).port;
    await new Promise((r) => free.close(r));
    await withHarness({ dstPort }, async (h) => {
      const r = await h2request(h.client(), req("GET", "/public/a"));
      assert.equal(r.status, 502);
      assert.equal(r.body.toString(), "Bad Gateway\r\n");
      const g = await h2request(
        h.client(),
        req("POST", "/public/svc.S/M", { "content-type": "application/grpc", te: "trailers" }),
        "\0\0\0\0\0",
      );
      assert.deepEqual(
        [g.status, g.headers["grpc-status"], g.headers["grpc-message"]],
        [200, "14", "Bad Gateway"],
      );
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.status, e.reason]),
        [
          ["error", 502, "upstream connection failed"],
          ["error", 502, "upstream connection failed"],
        ],
      );
    });
  });
});

describe("HTTP/2 proxy: limits and connection handling", () => {
  test("the concurrent stream limit is offered to the client and enforced on a client that ignores it", () =>
    withHarness({ limits: { maxConcurrentStreams: 2 } }, async (h) => {
      const c = h.client();
      await new Promise((r) => c.once("remoteSettings", r));
      assert.equal(c.remoteSettings.maxConcurrentStreams, 2);
      const open = (id: number): Buffer =>
        h2frame(
          1,
          0x4,
          id,
          hpackLiteral([
            [":method", "POST"],
            [":path", "/public/x"],
            [":scheme", "http"],
            [":authority", "svc"],
          ]),
        );
      // Three open request streams before the SETTINGS ACK: the third is refused.
      const frames = await rawH2(h.port, [open(1), open(3), open(5)], (f) => resets(f).size > 0);
      assert.deepEqual([...resets(frames)], [[5, REFUSED_STREAM]]);
    }));

  test("a header list over the limit resets the stream and reaches nothing", () =>
    withHarness({ limits: { maxHeaderListSize: 1000 } }, async (h) => {
      // Sent at once, before the client has our SETTINGS: the proxy measures it itself.
      const r = await h2request(h.client(), req("GET", "/public/a", { "x-big": "a".repeat(2000) }));
      assert.equal(r.rstCode, ENHANCE_YOUR_CALM);
      assert.equal(h.seen.length, 0);
      assert.deepEqual(
        h.events.map((e) => [e.verdict, e.reason]),
        [["error", "header list larger than 1000 bytes"]],
      );
      const ok = await h2request(h.client(), req("GET", "/public/a", { "x-small": "a".repeat(100) }));
      assert.equal(ok.status, 200);
    }));

  test("an idle connection is closed after the idle timeout", () =>
    withHarness({ limits: { idleTimeoutMs: 150 } }, async (h) => {
      const c = h.client();
      const r = await h2request(c, req("GET", "/public/a"));
      assert.equal(r.status, 200);
      const t0 = Date.now();
      await new Promise((r) => c.once("close", r));
      const waited = Date.now() - t0;
      assert.ok(waited < 3000, `closed after ${waited} ms`);
    }));

  test("bytes read to sniff the preface are replayed (head)", () =>
    withHarness({ sniff: true }, async (h) => {
      const c = h.client();
      const rs = await Promise.all([
        h2request(c, req("GET", "/public/a")),
        h2request(c, req("GET", "/admin")),
      ]);
      assert.deepEqual(
        rs.map((r) => r.status),
        [200, 403],
      );
    }));
});
