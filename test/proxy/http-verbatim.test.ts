/**
 * Issue 16 item 7: a request head the proxy does not change is forwarded as
 * the bytes read (no re-serialisation). That is only sound when those bytes
 * are exactly what serializeRequest would write from the judged field list:
 * parseRequestHead says so with `verbatim`. These tests hold the parser to
 * it (table and generated heads), and check through the real proxy that a
 * head it must change (normalised path, header action, framing) is still
 * re-serialised.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRequestHead, serializeRequest } from "../../src/proxy/http/request.js";
import { rawExchange, countResponses, startHarness, statuses } from "./http-harness.js";

const LIMITS = { maxHeadBytes: 64 * 1024, maxHeaders: 100 };

function parse(text: string): { verbatim: boolean; same: boolean } {
  const raw = Buffer.from(text, "latin1");
  const r = parseRequestHead(raw, LIMITS);
  assert.equal(r.kind, "ok", `parses: ${JSON.stringify(text)}`);
  if (r.kind !== "ok") throw new Error("unreachable");
  const same = serializeRequest(r.head, r.head.target).equals(raw.subarray(0, r.length));
  return { verbatim: r.verbatim, same };
}

describe("HTTP request head: verbatim only when the bytes read are the bytes serializeRequest writes", () => {
  const cases: { name: string; head: string; verbatim: boolean }[] = [
    {
      name: "a plain GET with Host",
      head: "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\nUser-Agent: x\r\n\r\n",
      verbatim: true,
    },
    {
      name: "an empty value after one space",
      head: "GET / HTTP/1.1\r\nHost: svc\r\nX-E: \r\n\r\n",
      verbatim: true,
    },
    { name: "two spaces after the colon", head: "GET / HTTP/1.1\r\nHost:  svc\r\n\r\n", verbatim: false },
    { name: "no space after the colon", head: "GET / HTTP/1.1\r\nHost:svc\r\n\r\n", verbatim: false },
    { name: "a tab after the colon", head: "GET / HTTP/1.1\r\nHost:\tsvc\r\n\r\n", verbatim: false },
    { name: "trailing whitespace", head: "GET / HTTP/1.1\r\nHost: svc \r\n\r\n", verbatim: false },
    { name: "a hop-by-hop field (left out)", head: "GET / HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive\r\n\r\n", verbatim: false }, // prettier-ignore
    { name: "Content-Length (written last by us)", head: "POST / HTTP/1.1\r\nContent-Length: 1\r\nHost: svc\r\n\r\n", verbatim: false }, // prettier-ignore
    { name: "HTTP/1.0 (Connection added)", head: "GET / HTTP/1.0\r\nHost: svc\r\n\r\n", verbatim: false },
    { name: "absolute-form target", head: "GET http://svc/x HTTP/1.1\r\nHost: svc\r\n\r\n", verbatim: false },
  ];
  for (const c of cases) {
    test(`${c.name}: verbatim ${c.verbatim}`, () => {
      const r = parse(c.head);
      assert.equal(r.verbatim, c.verbatim);
      if (r.verbatim) assert.ok(r.same, "verbatim bytes equal the serialisation");
    });
  }

  test("generated heads (random whitespace, fields, versions, forms): verbatim implies the same bytes", () => {
    const ows = fc.constantFrom("", " ", "  ", "\t", " \t");
    const name = fc.constantFrom("Host", "host", "X-A", "Accept", "Connection", "Content-Length", "TE", "Keep-Alive", "Upgrade"); // prettier-ignore
    const value = fc.constantFrom("svc", "a, b", "", "1", "keep-alive", "close", "x y");
    const field = fc.record({ name, pre: ows, value, post: ows });
    const arb = fc.record({
      version: fc.constantFrom("HTTP/1.1", "HTTP/1.0"),
      target: fc.constantFrom("/", "/a/b?c=d", "http://svc/x", "/a/../b"),
      fields: fc.array(field, { maxLength: 6 }),
    });
    let verbatims = 0;
    fc.assert(
      fc.property(arb, (q) => {
        let text = `GET ${q.target} ${q.version}\r\nHost: svc\r\n`;
        for (const f of q.fields) text += `${f.name}:${f.pre}${f.value}${f.post}\r\n`;
        const raw = Buffer.from(text + "\r\n", "latin1");
        const r = parseRequestHead(raw, LIMITS);
        if (r.kind !== "ok" || !r.verbatim) return;
        verbatims++;
        assert.ok(serializeRequest(r.head, r.head.target).equals(raw), JSON.stringify(text));
      }),
      { numRuns: 2000, seed: 16 },
    );
    assert.ok(verbatims > 50, `enough verbatim heads were generated (${verbatims})`);
  });
});

describe("HTTP proxy: heads it changes are re-serialised, the rest forwarded as read", () => {
  test("a dot segment reaches upstream normalised, a plain request as sent", async () => {
    const h = await startHarness({ rules: [{ path: "/api/.*", headers: [] }] });
    try {
      const req =
        "GET /api/x/../items HTTP/1.1\r\nHost: svc\r\n\r\nGET /api/plain HTTP/1.1\r\nHost: svc\r\n\r\n";
      const r = await rawExchange(h.port, req, { until: countResponses(2) });
      assert.deepEqual(statuses(r.text), [200, 200]);
      assert.deepEqual(
        h.seen.map((s) => s.url),
        ["/api/items", "/api/plain"],
      );
    } finally {
      await h.close();
    }
  });

  test("a header mismatch action's change reaches upstream", async () => {
    const h = await startHarness({
      rules: [{ path: "/.*", headers: [{ name: "X-Env", value: "prod", mismatch: "ADD" }] }],
    });
    try {
      const r = await rawExchange(h.port, "GET /a HTTP/1.1\r\nHost: svc\r\n\r\n", {
        until: countResponses(1),
      });
      assert.deepEqual(statuses(r.text), [200]);
      assert.equal(h.seen[0]?.headers["x-env"], "prod");
    } finally {
      await h.close();
    }
  });
});
