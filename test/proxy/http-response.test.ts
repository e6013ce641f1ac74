import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type net from "node:net";
import { rawExchange, startHarness } from "./http-harness.js";

const H = "Host: svc.local\r\n";

/** A raw upstream answering each request head with the next canned response. */
function canned(responses: string[], closeAfter = false): (s: net.Socket) => void {
  return (s) => {
    let buf = "";
    let i = 0;
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      let end: number;
      while ((end = buf.indexOf("\r\n\r\n")) >= 0) {
        buf = buf.slice(end + 4);
        const r = responses[i++];
        if (r === undefined) return s.destroy();
        s.write(r);
        if (closeAfter && i === responses.length) s.end();
      }
    });
    s.on("error", () => undefined);
  };
}

describe("HTTP proxy: response framing", () => {
  const cases: { name: string; reqs: string[]; responses: string[]; expect: string; closeAfter?: boolean }[] =
    [
      {
        name: "chunked response with extensions and trailers, then another response",
        reqs: ["GET /public/a", "GET /public/b"],
        responses: [
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
          "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
        ],
        expect:
          "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n" +
          "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
      },
      {
        name: "HEAD response with Content-Length has no body",
        reqs: ["HEAD /public/a", "GET /public/b"],
        responses: [
          "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ],
        expect: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
      },
      {
        name: "204 and 304 have no body",
        reqs: ["GET /public/a", "GET /public/b", "GET /public/c"],
        responses: [
          "HTTP/1.1 204 No Content\r\n\r\n",
          "HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ],
        expect:
          "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n" +
          "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
      },
      {
        name: "1xx interim responses are passed on before the final one",
        reqs: ["GET /public/a"],
        responses: [
          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        ],
        expect:
          "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
      },
      {
        name: "close-delimited response ends at upstream close, and so does the client connection",
        reqs: ["GET /public/a", "GET /public/b"],
        responses: ["HTTP/1.1 200 OK\r\n\r\nuntil close"],
        closeAfter: true,
        expect: "HTTP/1.1 200 OK\r\n\r\nuntil close",
      },
      {
        name: "upstream response with both Content-Length and Transfer-Encoding: 502",
        reqs: ["GET /public/a"],
        responses: ["HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"],
        expect:
          "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 13\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Gateway\r\n",
      },
      {
        name: "upstream response with bare LF: 502",
        reqs: ["GET /public/a"],
        responses: ["HTTP/1.1 200 OK\nContent-Length: 3\r\n\r\nabc"],
        expect:
          "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 13\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Gateway\r\n",
      },
      {
        name: "upstream Connection: close ends the client connection after the response",
        reqs: ["GET /public/a", "GET /public/b"],
        responses: [
          "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
          "HTTP/1.1 200 OK\r\n\r\n",
        ],
        expect: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na",
      },
    ];
  for (const c of cases) {
    test(c.name, async () => {
      const h = await startHarness({ rawUpstream: canned(c.responses, c.closeAfter) });
      try {
        const r = await rawExchange(h.port, c.reqs.map((l) => `${l} HTTP/1.1\r\n${H}\r\n`).join(""), {
          until: (t) => t.length >= c.expect.length && !c.closeAfter,
          timeoutMs: 1500,
        });
        assert.equal(r.text, c.expect);
      } finally {
        await h.close();
      }
    });
  }

  test("Expect: 100-continue: the head goes upstream at once and the interim 100 reaches the client", async () => {
    const h = await startHarness({});
    try {
      const head = `POST /public/a HTTP/1.1\r\n${H}Expect: 100-continue\r\nContent-Length: 3\r\n\r\n`;
      const r = await rawExchange(h.port, head, {
        until: (t) => t.includes("100 Continue"),
        timeoutMs: 1500,
      });
      assert.match(r.text, /^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    } finally {
      await h.close();
    }
  });
});
