import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { rawExchange, startHarness, statuses } from "./http-harness.js";

const BAD_REQUEST =
  "HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Request\r\n";

const H = "Host: svc.local\r\n";

/** Every case targets an allowed path: only the framing can be the reason of the 400. */
const cases: { name: string; req: string | Buffer; reason: RegExp }[] = [
  {
    name: "Content-Length together with Transfer-Encoding",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    reason: /both Content-Length and Transfer-Encoding/,
  },
  {
    name: "Transfer-Encoding before Content-Length",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`,
    reason: /both Content-Length and Transfer-Encoding/,
  },
  {
    name: "two equal Content-Length headers",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`,
    reason: /more than one Content-Length/,
  },
  {
    name: "two differing Content-Length headers",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc`,
    reason: /more than one Content-Length/,
  },
  {
    name: "Content-Length as a list",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`,
    reason: /invalid Content-Length/,
  },
  {
    name: "Content-Length with a sign",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`,
    reason: /invalid Content-Length/,
  },
  {
    name: "Content-Length in hex",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\nabc`,
    reason: /invalid Content-Length/,
  },
  {
    name: "Transfer-Encoding other than a single chunked",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    reason: /unsupported Transfer-Encoding/,
  },
  {
    name: "obfuscated Transfer-Encoding value",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`,
    reason: /unsupported Transfer-Encoding/,
  },
  {
    name: "Transfer-Encoding twice",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    reason: /unsupported Transfer-Encoding/,
  },
  {
    name: "Transfer-Encoding in HTTP/1.0",
    req: `POST /public/a HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    reason: /HTTP\/1\.0/,
  },
  {
    name: "obs-fold (continuation line starting with SP)",
    req: `GET /public/a HTTP/1.1\r\n${H}X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n`,
    reason: /obsolete line folding/,
  },
  {
    name: "obs-fold (continuation line starting with HT)",
    req: `GET /public/a HTTP/1.1\r\n${H}X-A: 1\r\n\tmore\r\n\r\n`,
    reason: /obsolete line folding/,
  },
  { name: "bare LF line endings", req: `GET /public/a HTTP/1.1\n${H.trim()}\n\n`, reason: /bare LF/ },
  {
    name: "one bare LF among CRLF",
    req: `GET /public/a HTTP/1.1\r\n${H}X-A: 1\nContent-Length: 5\r\n\r\n`,
    reason: /bare LF/,
  },
  { name: "bare CR", req: `GET /public/a HTTP/1.1\r\n${H}X-A: 1\rX-B: 2\r\n\r\n`, reason: /bare CR/ },
  {
    name: "space before the colon",
    req: `POST /public/a HTTP/1.1\r\n${H}Content-Length : 3\r\n\r\nabc`,
    reason: /invalid header name/,
  },
  {
    name: "tab before the colon",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n`,
    reason: /invalid header name/,
  },
  {
    name: "header name with a non-token character",
    req: `GET /public/a HTTP/1.1\r\n${H}X(A): 1\r\n\r\n`,
    reason: /invalid header name/,
  },
  {
    name: "header line without a colon",
    req: `GET /public/a HTTP/1.1\r\n${H}Junk\r\n\r\n`,
    reason: /without a name/,
  },
  { name: "NUL in a header value", req: `GET /public/a HTTP/1.1\r\n${H}X-A: a\0b\r\n\r\n`, reason: /NUL/ },
  { name: "NUL in the request target", req: `GET /public/a\0 HTTP/1.1\r\n${H}\r\n`, reason: /NUL/ },
  {
    name: "control character in a header value",
    req: `GET /public/a HTTP/1.1\r\n${H}X-A: a\x01b\r\n\r\n`,
    reason: /control character/,
  },
  {
    name: "absolute-form target naming another host than Host",
    req: `GET http://admin.local/public/a HTTP/1.1\r\n${H}\r\n`,
    reason: /does not match Host/,
  },
  { name: "HTTP/1.1 without Host", req: `GET /public/a HTTP/1.1\r\n\r\n`, reason: /without Host/ },
  {
    name: "two Host headers",
    req: `GET /public/a HTTP/1.1\r\n${H}Host: admin.local\r\n\r\n`,
    reason: /Host/,
  },
  { name: "Host with userinfo", req: `GET /public/a HTTP/1.1\r\nHost: a@svc.local\r\n\r\n`, reason: /Host/ },
  {
    name: "two spaces in the request line",
    req: `GET  /public/a HTTP/1.1\r\n${H}\r\n`,
    reason: /request line/,
  },
  { name: "unknown HTTP version", req: `GET /public/a HTTP/1.2\r\n${H}\r\n`, reason: /version/ },
  {
    name: "empty line before the request line",
    req: `\r\nGET /public/a HTTP/1.1\r\n${H}\r\n`,
    reason: /empty line/,
  },
  {
    name: "oversized head (over 64 KiB)",
    req: `GET /public/a HTTP/1.1\r\n${H}X-Big: ${"a".repeat(70 * 1024)}\r\n\r\n`,
    reason: /too large/,
  },
  {
    name: "too many header fields",
    req: `GET /public/a HTTP/1.1\r\n${H}${"X-A: 1\r\n".repeat(100)}\r\n`,
    reason: /too many/,
  },
  {
    name: "chunk extension",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n`,
    reason: /extensions/,
  },
  {
    name: "invalid chunk size",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`,
    reason: /chunk size/,
  },
  {
    name: "chunk size with leading whitespace",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n 3\r\nabc\r\n0\r\n\r\n`,
    reason: /chunk size/,
  },
  {
    name: "chunk size overflowing 8 hex digits",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n100000003\r\nabc\r\n0\r\n\r\n`,
    reason: /chunk size/,
  },
  {
    name: "negative chunk size",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n`,
    reason: /chunk size/,
  },
  {
    name: "chunk longer than its size",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n`,
    reason: /not followed by CRLF/,
  },
  {
    name: "bare LF after a chunk size",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n`,
    reason: /bare LF/,
  },
  {
    name: "trailer fields after the last chunk",
    req: `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n`,
    reason: /trailer/,
  },
  {
    name: "encoded slash in the path",
    req: `GET /public/..%2Fadmin HTTP/1.1\r\n${H}\r\n`,
    reason: /encoded slash/,
  },
  {
    name: "encoded backslash in the path",
    req: `GET /public/..%5cadmin HTTP/1.1\r\n${H}\r\n`,
    reason: /encoded/,
  },
  { name: "encoded NUL in the path", req: `GET /public/a%00.html HTTP/1.1\r\n${H}\r\n`, reason: /encoded/ },
  { name: "fragment in the target", req: `GET /public/a#/../admin HTTP/1.1\r\n${H}\r\n`, reason: /fragment/ },
  {
    name: "raw backslash in the target",
    req: `GET /public/..\\admin HTTP/1.1\r\n${H}\r\n`,
    reason: /invalid character/,
  },
  {
    name: "malformed percent-encoding",
    req: `GET /public/%zz HTTP/1.1\r\n${H}\r\n`,
    reason: /invalid character/,
  },
  {
    name: "dot segment hidden by ;params",
    req: `GET /public/..;/admin HTTP/1.1\r\n${H}\r\n`,
    reason: /parameters/,
  },
  { name: "CONNECT", req: `CONNECT svc.local:443 HTTP/1.1\r\n${H}\r\n`, reason: /CONNECT/ },
  { name: "asterisk-form", req: `OPTIONS * HTTP/1.1\r\n${H}\r\n`, reason: /origin-form/ },
  {
    name: "unsupported Expect",
    req: `GET /public/a HTTP/1.1\r\n${H}Expect: 200-ok\r\n\r\n`,
    reason: /Expect/,
  },
];

describe("HTTP proxy: ambiguous framing is refused before a byte reaches upstream", () => {
  for (const c of cases) {
    test(`400 and close: ${c.name}`, async () => {
      const h = await startHarness({});
      try {
        const r = await rawExchange(h.port, c.req);
        assert.equal(r.text, BAD_REQUEST);
        assert.equal(r.closed, true);
        assert.equal(await h.upstreamBytes(), 0, "bytes reached upstream");
        assert.equal(h.seen.length, 0);
        assert.equal(h.events.length, 1);
        assert.equal(h.events[0]?.status, 400);
        assert.match(h.events[0]?.reason ?? "", c.reason);
      } finally {
        await h.close();
      }
    });
  }

  test("a smuggled request after a bad one on the same connection is never parsed", async () => {
    const h = await startHarness({ rules: [{ headers: [] }] });
    try {
      const smuggle = `POST /public/a HTTP/1.1\r\n${H}Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n${H}\r\n`;
      const r = await rawExchange(h.port, smuggle);
      assert.equal(r.text, BAD_REQUEST);
      assert.equal(await h.upstreamBytes(), 0);
    } finally {
      await h.close();
    }
  });

  test("a framing error after earlier good requests on the connection: those answered, then 400", async () => {
    const h = await startHarness({});
    try {
      const good = `GET /public/a HTTP/1.1\r\n${H}\r\n`;
      const bad = `POST /public/b HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab`;
      const r = await rawExchange(h.port, good + bad);
      assert.deepEqual(statuses(r.text), [200, 400]);
      assert.deepEqual(
        h.seen.map((s) => s.url),
        ["/public/a"],
      );
    } finally {
      await h.close();
    }
  });

  test("bad chunk framing in a body larger than the hold limit: upstream connection aborted, request never completes", async () => {
    const h = await startHarness({ limits: { maxBufferedBody: 16 } });
    try {
      const body = `20\r\n${"a".repeat(32)}\r\n20\r\n${"b".repeat(32)}\r\nzz\r\n`;
      const r = await rawExchange(h.port, [
        `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n`,
        body,
      ]);
      assert.deepEqual(statuses(r.text), [400]);
      await new Promise((res) => setTimeout(res, 30));
      assert.equal(h.seen.length, 0, "upstream saw a complete request");
    } finally {
      await h.close();
    }
  });
});
