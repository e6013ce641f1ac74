/**
 * Issue 9 item 1: the proxy judges exactly the request it forwards.
 *
 * The harness (http-harness.ts) records every allowed request as the policy
 * judged it and every request the real node:http upstream received, and its
 * close() asserts that each received request equals a judged one in method,
 * path, Host and every header field: so every HTTP proxy test file is a
 * differential test. This file adds the trial's bypass, the Connection
 * header's cases, and a generated family of requests (random Connection
 * tokens, header case, repeated fields, HTTP/1.0 and 1.1, absolute-form).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileHttpRules } from "../../src/policy/l7/http.js";
import type { HttpRule } from "../../src/policy/types.js";
import { countResponses, rawExchange, startHarness, statuses, upstreamView } from "./http-harness.js";

const HOST_ONLY: HttpRule[] = [{ host: "public\\.example", headers: [] }];

describe("HTTP proxy: a Connection header cannot change the request after it was judged", () => {
  test("the trial's bypass: HTTP/1.0, Host allowed, `Connection: host` gets 400 and reaches no backend", async () => {
    const h = await startHarness({ rules: HOST_ONLY });
    try {
      const req = "GET / HTTP/1.0\r\nHost: public.example\r\nConnection: host\r\n\r\n";
      const r = await rawExchange(h.port, req, { until: countResponses(1) });
      assert.deepEqual(statuses(r.text), [400]);
      assert.equal(h.upstreamConnections(), 0);
      assert.equal(await h.upstreamBytes(), 0);
      assert.equal(h.events[0]?.status, 400);
      assert.match(h.events[0]?.reason ?? "", /Connection header names a field that is not hop-by-hop/);
    } finally {
      await h.close();
    }
  });

  const rules: HttpRule[] = [
    { host: "public\\.example", path: "/public/.*", headers: [] },
    { path: "/api/.*", headers: [{ name: "X-Token", value: "s3cret" }] },
  ];
  const base = "GET /public/a HTTP/1.1\r\nHost: public.example\r\nX-Token: s3cret\r\nX-Other: o\r\n";
  const refused: { name: string; connection: string; extra?: string }[] = [
    { name: "names Host", connection: "host" },
    { name: "names Host among allowed options", connection: "keep-alive, Host" },
    { name: "names Content-Length (framing)", connection: "content-length", extra: "Content-Length: 0\r\n" },
    { name: "names Transfer-Encoding (framing)", connection: "Transfer-Encoding" },
    { name: "names a header a rule names", connection: "x-token" },
    { name: "names a present header no rule names", connection: "X-Other" },
    { name: "names an absent header", connection: "x-absent" },
    { name: "names Host in a second Connection header", connection: "close\r\nConnection: host" },
  ];
  for (const c of refused) {
    test(`a Connection header that ${c.name} is refused with 400 before a byte goes upstream`, async () => {
      const h = await startHarness({ rules });
      try {
        const req = `${base}${c.extra ?? ""}Connection: ${c.connection}\r\n\r\n`;
        const r = await rawExchange(h.port, req, { until: countResponses(1) });
        assert.deepEqual(statuses(r.text), [400]);
        assert.equal(await h.upstreamBytes(), 0);
      } finally {
        await h.close();
      }
    });
  }

  const accepted = ["close", "Keep-Alive", "keep-alive, TE", "Upgrade, HTTP2-Settings", "close,", ", close"];
  for (const connection of accepted) {
    test(`\`Connection: ${connection}\` is accepted and Host and X-Token still reach upstream`, async () => {
      const h = await startHarness({ rules });
      try {
        const req = `${base}Connection: ${connection}\r\n\r\n`;
        const r = await rawExchange(h.port, req, { until: countResponses(1) });
        assert.deepEqual(statuses(r.text), [200]);
        assert.equal(h.seen[0]?.headers.host, "public.example");
        assert.equal(h.seen[0]?.headers["x-token"], "s3cret");
      } finally {
        await h.close();
      }
    });
  }
});

describe("HTTP proxy: differential, generated requests", () => {
  const rules: HttpRule[] = [
    { host: "public\\.example(:80)?", path: "/public/.*", headers: [] },
    { method: "GET", path: "/admin", headers: [{ name: "X-Token", value: "s3cret" }] },
    { method: "DELETE|POST", headers: [{ name: "X-Role", value: "admin" }, { name: "X-Trace" }] },
  ];
  const matcher = compileHttpRules(rules);
  const HOP_BY_HOP = new Set([
    "close",
    "keep-alive",
    "upgrade",
    "http2-settings",
    "te",
    "trailer",
    "proxy-connection",
  ]);

  const nameCase = (n: string): fc.Arbitrary<string> => fc.constantFrom(n, n.toLowerCase(), n.toUpperCase());
  const field = fc.tuple(
    fc.constantFrom("X-Token", "X-Role", "X-Trace", "Accept", "X-Other", "TE", "Keep-Alive").chain(nameCase),
    fc.constantFrom("s3cret", "admin", "other", "trailers", "x, y"),
  );
  const token = fc
    .constantFrom(
      "close",
      "keep-alive",
      "upgrade",
      "te",
      "host",
      "content-length",
      "transfer-encoding",
      "x-token",
      "x-role",
      "x-other",
      "",
    )
    .chain(nameCase);
  const requestArb = fc.record({
    method: fc.constantFrom("GET", "POST", "DELETE", "HEAD"),
    path: fc.constantFrom("/", "/public/a", "/public/../admin", "/admin", "/public/%7Ex", "/public/a?q=1"),
    version: fc.constantFrom("HTTP/1.0", "HTTP/1.1"),
    host: fc.constantFrom("public.example", "public.example:80", "other.example", undefined),
    absolute: fc.boolean(),
    fields: fc.array(field, { maxLength: 5 }),
    connection: fc.option(fc.array(token, { minLength: 1, maxLength: 3 }), { nil: undefined }),
    body: fc.boolean(),
  });

  test("whatever upstream receives was judged, field by field, and the policy allows upstream's view", async () => {
    const h = await startHarness({ rules });
    let forwarded = 0;
    try {
      await fc.assert(
        fc.asyncProperty(requestArb, async (q) => {
          const target = q.absolute && q.host ? `http://${q.host}${q.path}` : q.path;
          let head = `${q.method} ${target} ${q.version}\r\n`;
          if (q.host) head += `Host: ${q.host}\r\n`;
          for (const [n, v] of q.fields) head += `${n}: ${v}\r\n`;
          if (q.connection) head += `Connection: ${q.connection.join(", ")}\r\n`;
          if (q.body) head += "Content-Length: 2\r\n";
          const req = `${head}\r\n${q.body ? "hi" : ""}`;
          const before = h.seen.length;
          const r = await rawExchange(h.port, req, { until: countResponses(1) });
          const got = statuses(r.text);
          assert.equal(got.length, 1, `one answer to ${JSON.stringify(req)}: ${r.text}`);
          const badToken = (q.connection ?? []).some((t) => t !== "" && !HOP_BY_HOP.has(t.toLowerCase()));
          if (badToken) assert.equal(got[0], 400, `Connection: ${q.connection?.join(", ")}`);
          if (got[0] !== 200) {
            assert.equal(h.seen.length, before, "nothing reaches upstream unless allowed");
            return;
          }
          assert.equal(h.seen.length, before + 1);
          forwarded++;
          const seen = h.seen[before];
          assert.ok(seen);
          // Upstream's own view, judged afresh by the same rules, is allowed.
          assert.equal(matcher.match(upstreamView(seen)).allowed, true, JSON.stringify(upstreamView(seen)));
          if (q.host) assert.equal(seen.headers.host, q.host, "Host always reaches upstream");
          h.assertUpstreamSawWhatWasJudged();
        }),
        { numRuns: 300 },
      );
      assert.ok(forwarded >= 5, `only ${forwarded} generated requests were forwarded`);
    } finally {
      await h.close();
    }
  });
});
