/**
 * f7 (issue 10 item 5 c): `headerMatches[].mismatch` in the HTTP proxy, as
 * cilium-envoy applies it: a mismatch never denies; LOG records it, ADD
 * appends the value, DELETE removes a wrong header, REPLACE sets the value;
 * the request is forwarded so changed. The judged-vs-forwarded invariant
 * (http-harness.ts: what upstream receives equals a request the policy judged)
 * holds with the judged request being the request as the actions left it:
 * the field list is edited in place and both the later judging and the bytes
 * upstream read that one list. A generated family checks each action against
 * its definition, independently of the proxy's own code.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileHttpRules } from "../../src/policy/l7/http.js";
import type { HttpRule } from "../../src/policy/types.js";
import { countResponses, rawExchange, startHarness, statuses, upstreamView } from "./http-harness.js";
import { h2request, policyOf, startH2Harness } from "./http2-harness.js";

const RULES: HttpRule[] = [
  {
    path: "/public/.*",
    headers: [
      { name: "X-Role", value: "admin", mismatch: "REPLACE" },
      { name: "X-Trace", value: "on", mismatch: "ADD" },
      { name: "X-Other", value: "other", mismatch: "DELETE" },
      { name: "X-Token", value: "s3cret", mismatch: "LOG" },
    ],
  },
  { path: "/strict", headers: [{ name: "X-Token", value: "s3cret" }] },
];

const get = (path: string, fields: [string, string][]): string =>
  `GET ${path} HTTP/1.1\r\nHost: svc.local\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join("")}\r\n`;

describe("f7 HTTP proxy: header mismatch actions", () => {
  test("every header missing: X-Role is set, X-Trace added, nothing deleted, X-Token's mismatch logged; upstream gets the result", async () => {
    const h = await startHarness({ rules: RULES });
    try {
      const r = await rawExchange(h.port, get("/public/a", []), { until: countResponses(1) });
      assert.deepEqual(statuses(r.text), [200]);
      const seen = h.seen[0];
      assert.ok(seen);
      assert.equal(seen.headers["x-role"], "admin");
      assert.equal(seen.headers["x-trace"], "on");
      assert.equal(seen.headers["x-other"], undefined);
      assert.equal(seen.headers["x-token"], undefined);
      const e = h.events.find((x) => x.verdict === "forwarded");
      assert.deepEqual(e?.headerActions, ["REPLACE x-role: admin", "ADD x-trace: on", "LOG x-token"]);
    } finally {
      await h.close(); // asserts: what upstream received was judged
    }
  });

  test("wrong values: X-Role replaced, X-Trace appended to, X-Other removed; the client's X-Token value is never logged", async () => {
    const h = await startHarness({ rules: RULES });
    try {
      const fields: [string, string][] = [
        ["X-Role", "guest"],
        ["X-Trace", "off"],
        ["X-Other", "bad"],
        ["X-Token", "leaked-value"],
      ];
      const r = await rawExchange(h.port, get("/public/a", fields), { until: countResponses(1) });
      assert.deepEqual(statuses(r.text), [200]);
      const v = upstreamView(h.seen[0] as (typeof h.seen)[number]);
      assert.equal(v.headers?.["x-role"], "admin");
      assert.equal(v.headers?.["x-trace"], "off, on");
      assert.equal(v.headers?.["x-other"], undefined);
      assert.equal(v.headers?.["x-token"], "leaked-value");
      assert.ok(!JSON.stringify(h.events).includes("leaked-value"), "client header values stay out of flows");
    } finally {
      await h.close();
    }
  });

  test("the actions never make a rule match; a header match without an action still denies", async () => {
    const h = await startHarness({ rules: RULES });
    try {
      const r1 = await rawExchange(h.port, get("/admin", []), { until: countResponses(1) });
      const r2 = await rawExchange(h.port, get("/strict", [["X-Token", "wrong"]]), {
        until: countResponses(1),
      });
      assert.deepEqual([...statuses(r1.text), ...statuses(r2.text)], [403, 403]);
      assert.equal(await h.upstreamBytes(), 0);
    } finally {
      await h.close();
    }
  });

  test("generated requests: upstream receives each action's definition applied to the client's fields, and nothing else changes", async () => {
    const h = await startHarness({ rules: RULES });
    const value = fc.constantFrom("admin", "guest", "on", "off", "other", "bad", "s3cret", "x, y");
    const name = fc.constantFrom("X-Role", "X-Trace", "X-Other", "X-Token", "X-Free", "Accept");
    const arb = fc.record({
      path: fc.constantFrom("/public/a", "/public/../admin", "/strict"),
      fields: fc.uniqueArray(fc.tuple(name, value), { maxLength: 5, selector: ([n]) => n }),
    });
    let forwarded = 0;
    try {
      await fc.assert(
        fc.asyncProperty(arb, async (q) => {
          const before = h.seen.length;
          const r = await rawExchange(h.port, get(q.path, q.fields), { until: countResponses(1) });
          const got = statuses(r.text);
          const sent = new Map<string, string>(q.fields.map(([n, v]) => [n.toLowerCase(), v]));
          const wantAllowed =
            q.path === "/public/a" || (q.path === "/strict" && sent.get("x-token") === "s3cret");
          assert.deepEqual(got, [wantAllowed ? 200 : 403], JSON.stringify(q));
          if (!wantAllowed) return void assert.equal(h.seen.length, before);
          forwarded++;
          const v = upstreamView(h.seen[before] as (typeof h.seen)[number]).headers ?? {};
          const want = new Map<string, string>(sent);
          if (q.path === "/public/a") {
            want.set("x-role", "admin");
            const t = sent.get("x-trace");
            want.set("x-trace", t === undefined || t === "on" ? "on" : `${t}, on`);
            if (sent.has("x-other") && sent.get("x-other") !== "other") want.delete("x-other");
          }
          for (const n of ["x-role", "x-trace", "x-other", "x-token", "x-free", "accept"])
            assert.equal(v[n], want.get(n), `${n} of ${JSON.stringify(q)}`);
          h.assertUpstreamSawWhatWasJudged();
        }),
        { numRuns: 150 },
      );
      assert.ok(forwarded >= 20, `only ${forwarded} generated requests were forwarded`);
    } finally {
      await h.close();
    }
  });
});

describe("f7 HTTP proxy: ADD to a header the client sent forwards one field", () => {
  test("upstream gets a single X-Trace field holding the joined value the rules judged, not two fields", async () => {
    const h = await startHarness({ rules: RULES });
    try {
      const r = await rawExchange(h.port, get("/public/a", [["X-Trace", "off"]]), {
        until: countResponses(1),
      });
      assert.deepEqual(statuses(r.text), [200]);
      const seen = h.seen[0];
      assert.ok(seen);
      const traces: string[] = [];
      for (let i = 0; i + 1 < seen.rawHeaders.length; i += 2)
        if ((seen.rawHeaders[i] as string).toLowerCase() === "x-trace")
          traces.push(seen.rawHeaders[i + 1] as string);
      // Two fields would let a server keep only the first ("off"), not what was judged ("off, on").
      assert.deepEqual(traces, ["off, on"]);
    } finally {
      await h.close();
    }
  });
});

describe("f7 HTTP rule matching with mismatch actions (cilium-envoy's order)", () => {
  test("every rule whose other fields match runs its actions, in order, on what the previous left", () => {
    const m = compileHttpRules([
      { path: "/a", headers: [{ name: "X-V", value: "one", mismatch: "REPLACE" }] },
      { path: "/.*", headers: [{ name: "X-V", value: "two", mismatch: "ADD" }] },
      { path: "/b", headers: [{ name: "X-V", value: "never", mismatch: "REPLACE" }] },
    ]);
    assert.deepEqual(m.match({ method: "GET", path: "/a", headers: { "x-v": "zero" } }), {
      allowed: true,
      ruleIndex: 0,
      actions: [
        { action: "REPLACE", name: "x-v", value: "one" },
        { action: "ADD", name: "x-v", value: "two" },
      ],
    });
  });
  test("DELETE of a presence-only match or of an absent header does nothing; a matching header takes no action", () => {
    const m = compileHttpRules([
      {
        headers: [
          { name: "X-P", mismatch: "DELETE" },
          { name: "X-Q", value: "q", mismatch: "DELETE" },
          { name: "X-R", value: "r", mismatch: "REPLACE" },
        ],
      },
    ]);
    assert.deepEqual(m.match({ method: "GET", path: "/", headers: { "x-r": "r" } }), {
      allowed: true,
      ruleIndex: 0,
    });
  });
});

describe("f7 HTTP/2 proxy: header mismatch actions", () => {
  test("REPLACE and ADD reach upstream in the forwarded HEADERS; the flow names the actions", async () => {
    const h = await startH2Harness({ policy: policyOf(RULES) });
    try {
      const r = await h2request(h.client(), {
        ":method": "GET",
        ":path": "/public/a",
        ":authority": "svc.local",
        "x-role": "guest",
        "x-other": "bad",
      });
      assert.equal(r.status, 200);
      const raw = h.seen[0]?.raw ?? [];
      const field = (n: string): string[] =>
        raw.flatMap((x, i) => (i % 2 === 0 && x === n ? [raw[i + 1] as string] : []));
      assert.deepEqual(field("x-role"), ["admin"]);
      assert.deepEqual(field("x-trace"), ["on"]);
      assert.deepEqual(field("x-other"), []);
      const e = h.events.find((x) => x.verdict === "forwarded");
      assert.deepEqual(e?.headerActions, [
        "REPLACE x-role: admin",
        "ADD x-trace: on",
        "DELETE x-other",
        "LOG x-token",
      ]);
    } finally {
      await h.close();
    }
  });
});
