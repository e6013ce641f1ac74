import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { HttpRule } from "../../src/policy/types.js";
import { countResponses, rawExchange, startHarness, statuses } from "./http-harness.js";

const H = "Host: svc.local\r\n";

describe("HTTP proxy: the path judged is the path forwarded", () => {
  const cases: { name: string; target: string; status: number; upstreamSees?: string }[] = [
    { name: "dot-dot out of an allowed prefix is judged as /admin", target: "/public/../admin", status: 403 },
    { name: "encoded dot-dot is decoded before matching", target: "/public/%2e%2e/admin", status: 403 },
    { name: "mixed-case encoded dot-dot", target: "/public/%2E%2e/admin", status: 403 },
    { name: "dot-dot with ;params before it", target: "/public;x/../admin", status: 403 },
    { name: ";params on a denied path stay denied", target: "/admin;jsessionid=1", status: 403 },
    {
      name: "single-dot segments are removed",
      target: "/public/./a",
      status: 200,
      upstreamSees: "/public/a",
    },
    {
      name: "dot-dot inside the allowed prefix is forwarded normalised",
      target: "/public/x/../a",
      status: 200,
      upstreamSees: "/public/a",
    },
    {
      name: "encoded unreserved characters are decoded in what upstream reads",
      target: "/public/%7Euser",
      status: 200,
      upstreamSees: "/public/~user",
    },
    {
      name: "query string kept as is",
      target: "/public/a?x=%2F..",
      status: 200,
      upstreamSees: "/public/a?x=%2F..",
    },
    { name: "path without the prefix's slash does not match", target: "/publicity", status: 403 },
    {
      name: "dot-dot above the root stays at the root",
      target: "/../../public/a",
      status: 200,
      upstreamSees: "/public/a",
    },
  ];
  for (const c of cases) {
    test(`${c.status}: ${c.name} (${c.target})`, async () => {
      const h = await startHarness({});
      try {
        const r = await rawExchange(h.port, `GET ${c.target} HTTP/1.1\r\n${H}\r\n`, {
          until: countResponses(1),
        });
        assert.deepEqual(statuses(r.text), [c.status]);
        if (c.upstreamSees !== undefined)
          assert.deepEqual(
            h.seen.map((s) => s.url),
            [c.upstreamSees],
          );
        else assert.equal(await h.upstreamBytes(), 0);
      } finally {
        await h.close();
      }
    });
  }

  test("absolute-form naming the Host is forwarded in origin-form", async () => {
    const h = await startHarness({});
    try {
      const r = await rawExchange(h.port, `GET http://svc.local/public/a?q=1 HTTP/1.1\r\n${H}\r\n`, {
        until: countResponses(1),
      });
      assert.deepEqual(statuses(r.text), [200]);
      assert.deepEqual(
        h.seen.map((s) => s.url),
        ["/public/a?q=1"],
      );
    } finally {
      await h.close();
    }
  });
});

describe("HTTP proxy: method, host and header rules", () => {
  const rules: HttpRule[] = [
    { method: "GET", path: "/api/.*", headers: [{ name: "X-Token", value: "s3cret" }] },
    { method: "POST", path: "/upload", headers: [{ name: "X-Trace" }] },
    { host: "api\\.local(:[0-9]+)?", path: "/v1", headers: [] },
  ];
  const cases: { name: string; req: string; status: number; rule?: number }[] = [
    {
      name: "exact header value",
      req: `GET /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\n\r\n`,
      status: 200,
      rule: 0,
    },
    {
      name: "header name is case-insensitive",
      req: `GET /api/x HTTP/1.1\r\n${H}x-token: s3cret\r\n\r\n`,
      status: 200,
    },
    { name: "wrong header value", req: `GET /api/x HTTP/1.1\r\n${H}X-Token: S3CRET\r\n\r\n`, status: 403 },
    { name: "missing header", req: `GET /api/x HTTP/1.1\r\n${H}\r\n`, status: 403 },
    {
      // Servers disagree on which of two values counts: refused whatever the verdict.
      name: "a header named by a rule, twice (one right, one wrong), is refused",
      req: `GET /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\nX-Token: other\r\n\r\n`,
      status: 400,
    },
    {
      name: "a header named by a rule, twice with the same value, is refused",
      req: `GET /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\nx-token: s3cret\r\n\r\n`,
      status: 400,
    },
    {
      name: "a header no rule names may repeat (joined, as judged)",
      req: `GET /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\nAccept: a\r\nAccept: b\r\n\r\n`,
      status: 200,
    },
    {
      name: "method is matched whole",
      req: `GETX /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\n\r\n`,
      status: 403,
    },
    {
      name: "presence-only header rule",
      req: `POST /upload HTTP/1.1\r\n${H}X-Trace: anything\r\nContent-Length: 2\r\n\r\nhi`,
      status: 200,
      rule: 1,
    },
    {
      name: "presence-only header missing",
      req: `POST /upload HTTP/1.1\r\n${H}Content-Length: 0\r\n\r\n`,
      status: 403,
    },
    { name: "host rule", req: `GET /v1 HTTP/1.1\r\nHost: api.local:8080\r\n\r\n`, status: 200, rule: 2 },
    { name: "host rule, other host", req: `GET /v1 HTTP/1.1\r\nHost: evil.local\r\n\r\n`, status: 403 },
  ];
  for (const c of cases) {
    test(`${c.status}: ${c.name}`, async () => {
      const h = await startHarness({ rules });
      try {
        const r = await rawExchange(h.port, c.req, { until: countResponses(1) });
        assert.deepEqual(statuses(r.text), [c.status]);
        assert.equal(h.seen.length, c.status === 200 ? 1 : 0);
        if (c.rule !== undefined) assert.equal(h.events[0]?.rule, c.rule);
      } finally {
        await h.close();
      }
    });
  }

  test("flow events never carry header values", async () => {
    const h = await startHarness({ rules });
    try {
      const req = `GET /api/x HTTP/1.1\r\n${H}X-Token: s3cret\r\nCookie: session=hunter2\r\n\r\n`;
      await rawExchange(h.port, req + `GET /api/y HTTP/1.1\r\n${H}X-Token: wrong-s3cret\r\n\r\n`, {
        until: countResponses(2),
      });
      assert.equal(h.events.length, 2);
      const text = JSON.stringify(h.events);
      assert.ok(!text.includes("s3cret") && !text.includes("hunter2"), text);
    } finally {
      await h.close();
    }
  });
});

describe("HTTP proxy: what is forwarded", () => {
  test("hop-by-hop headers are not forwarded; others are, in order", async () => {
    const h = await startHarness({});
    try {
      const req =
        `GET /public/a HTTP/1.1\r\n${H}X-One: 1\r\nConnection: keep-alive, Upgrade, TE\r\n` +
        `Keep-Alive: timeout=5\r\nTE: trailers\r\nUpgrade: websocket\r\nProxy-Connection: x\r\nX-Two: 2\r\n\r\n`;
      await rawExchange(h.port, req, { until: countResponses(1) });
      assert.deepEqual(h.seen[0]?.rawHeaders, ["Host", "svc.local", "X-One", "1", "X-Two", "2"]);
    } finally {
      await h.close();
    }
  });

  test("a chunked body is verified and re-chunked without extensions", async () => {
    const h = await startHarness({});
    try {
      const req = `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`;
      const r = await rawExchange(h.port, req, { until: countResponses(1) });
      assert.deepEqual(statuses(r.text), [200]);
      assert.equal(h.seen[0]?.body, "hello world");
      assert.equal(h.seen[0]?.headers["transfer-encoding"], "chunked");
    } finally {
      await h.close();
    }
  });

  test("a body larger than the hold limit is streamed whole, split over many writes", async () => {
    const h = await startHarness({ limits: { maxBufferedBody: 1024 } });
    try {
      const body = "x".repeat(300 * 1024);
      const head = `POST /public/big HTTP/1.1\r\n${H}Content-Length: ${body.length}\r\n\r\n`;
      const r = await rawExchange(h.port, [head, body.slice(0, 1000), body.slice(1000)], {
        until: countResponses(1),
      });
      assert.deepEqual(statuses(r.text), [200]);
      assert.equal(h.seen[0]?.body.length, body.length);
    } finally {
      await h.close();
    }
  });

  test("a request split byte by byte is still parsed", async () => {
    const h = await startHarness({});
    try {
      const req = `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3\r\n\r\nabc`;
      const r = await rawExchange(h.port, [...req.slice(0, 40)].concat(req.slice(40)), {
        until: countResponses(1),
      });
      assert.deepEqual(statuses(r.text), [200]);
      assert.equal(h.seen[0]?.body, "abc");
    } finally {
      await h.close();
    }
  });
});
