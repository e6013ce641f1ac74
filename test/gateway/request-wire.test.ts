/**
 * The request as an HTTP/1.1 backend gets it from the gateway (request-wire.ts): one Buffer,
 * the route's fields in order, X-Forwarded-For kept or added, X-Forwarded-Proto, the body
 * framed by Content-Length; the parsed head's framing and hop-by-hop fields left out.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseRequestHead } from "../../src/proxy/http/request.js";
import { forwardedFields, requestWire } from "../../src/gateway/request-wire.js";

const LIMITS = { maxHeadBytes: 65536, maxHeaders: 100 };

function parsed(text: string) {
  const r = parseRequestHead(Buffer.from(text, "latin1"), LIMITS);
  assert.equal(r.kind, "ok");
  return r.kind === "ok" ? r.head : assert.fail("parsed");
}

describe("gateway request wire", () => {
  const cases: { name: string; request: string; body?: string; peer?: string; want: string }[] = [
    {
      name: "no body: no Content-Length; the client's address as X-Forwarded-For",
      request: "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\n\r\n",
      want: "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\n\r\n",
    },
    {
      name: "the client's X-Forwarded-For is kept, not added to",
      request: "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
      want: "GET / HTTP/1.1\r\nHost: svc\r\nX-Forwarded-For: 1.2.3.4\r\nx-forwarded-proto: http\r\n\r\n",
    },
    {
      name: "a chunked body read whole: Content-Length, no Transfer-Encoding, no Connection",
      request:
        "POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n",
      body: "hello",
      want: "POST /p HTTP/1.1\r\nHost: svc\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\ncontent-length: 5\r\n\r\nhello",
    },
    {
      name: "an empty body that had a length still says Content-Length: 0",
      request: "POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n",
      want: "POST /p HTTP/1.1\r\nHost: svc\r\nx-forwarded-for: 10.0.0.1\r\nx-forwarded-proto: http\r\ncontent-length: 0\r\n\r\n",
    },
  ];
  for (const c of cases)
    test(c.name, () => {
      const head = parsed(c.request);
      const headers = forwardedFields(head.headers);
      const wire = requestWire({
        request: { method: head.method, target: head.target, host: head.host, headers },
        forwardedFor: headers.find((h) => h.lower === "x-forwarded-for")?.value,
        peer: "10.0.0.1",
        proto: "http",
        body: Buffer.from(c.body ?? "", "latin1"),
        framed: head.framing.kind !== "none",
      });
      assert.equal(wire.toString("latin1"), c.want);
    });

  test("the common request's field list is the parsed one itself (nothing to leave out)", () => {
    const head = parsed("GET / HTTP/1.1\r\nHost: svc\r\n\r\n");
    assert.equal(forwardedFields(head.headers), head.headers);
  });
});
