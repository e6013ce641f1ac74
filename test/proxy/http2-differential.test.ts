/**
 * Issue 9 item 1, HTTP/2 leg: what the proxy sends upstream (node:http2
 * client, re-encoded) is what was judged. Generated raw requests (HPACK
 * literals, so nothing in a client library tidies them up) with `host`
 * with or without `:authority`, repeated fields, cookies, `te: trailers`,
 * field-name case; for every request upstream receives, its :method,
 * :path, :authority and regular fields (repeats joined) equal the judged
 * view (parseRequestHeaders and normalizeHttpPath, the functions the proxy
 * judges with), and the rules, run again on upstream's view, allow it.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { compileHttpRules, normalizeHttpPath } from "../../src/policy/l7/http.js";
import type { HttpRule } from "../../src/policy/types.js";
import { parseRequestHeaders } from "../../src/proxy/http2/headers.js";
import {
  h2frame,
  hpackLiteral,
  policyOf,
  rawH2,
  startH2Harness,
  type UpstreamSeen,
} from "./http2-harness.js";

const RULES: HttpRule[] = [
  { host: "public\\.example", path: "/public/.*", headers: [] },
  { method: "GET", path: "/admin", headers: [{ name: "x-token", value: "s3cret" }] },
];

/** Upstream's view: pseudo-headers and regular fields joined as RFC 9113 §8.2.3 says. */
function upstreamView(s: UpstreamSeen): {
  method: string;
  path: string;
  host: string;
  headers: Record<string, string>;
} {
  const headers = Object.create(null) as Record<string, string>;
  for (let i = 0; i + 1 < s.raw.length; i += 2) {
    const n = s.raw[i] as string;
    if (n.startsWith(":")) continue;
    const v = s.raw[i + 1] as string;
    headers[n] = n in headers ? `${headers[n]}${n === "cookie" ? "; " : ", "}${v}` : v;
  }
  return { method: s.method, path: s.path, host: s.authority, headers };
}

describe("HTTP/2 proxy: differential, generated requests", () => {
  const matcher = compileHttpRules(RULES);
  const requestArb = fc.record({
    method: fc.constantFrom("GET", "POST"),
    path: fc.constantFrom("/public/a", "/public/../admin", "/admin", "/public/%7Ex?q=1"),
    authority: fc.option(fc.constantFrom("public.example", "other.example"), { nil: undefined }),
    host: fc.option(fc.constantFrom("public.example", "other.example"), { nil: undefined }),
    fields: fc.array(
      fc.tuple(
        fc.constantFrom("x-token", "X-Token", "cookie", "accept", "te"),
        fc.constantFrom("s3cret", "a=1", "trailers", "x"),
      ),
      { maxLength: 4 },
    ),
  });

  test("whatever upstream receives was judged, field by field", async () => {
    const h = await startH2Harness({ policy: policyOf(RULES) });
    let forwarded = 0;
    try {
      await fc.assert(
        fc.asyncProperty(requestArb, async (q) => {
          const raw: [string, string][] = [
            [":method", q.method],
            [":path", q.path],
            [":scheme", "http"],
          ];
          if (q.authority) raw.push([":authority", q.authority]);
          if (q.host) raw.push(["host", q.host]);
          raw.push(...q.fields);
          const before = h.seen.length;
          const frames = await rawH2(h.port, [h2frame(1, 0x5, 1, hpackLiteral(raw))], (f) =>
            f.some((x) => x.streamId === 1 && (x.type === 3 || (x.flags & 1) === 1)),
          );
          assert.ok(frames.length > 0);
          const parsed = parseRequestHeaders(raw.flat());
          if (h.seen.length === before) return; // refused or denied: nothing to compare
          assert.equal(h.seen.length, before + 1);
          forwarded++;
          assert.ok(parsed.ok, "only a well-formed request reaches upstream");
          const seen = upstreamView(h.seen[before] as UpstreamSeen);
          const judged = {
            method: parsed.req.method,
            path: normalizeHttpPath(parsed.req.path),
            host: parsed.req.authority,
            headers: parsed.req.headers,
          };
          assert.deepEqual(
            { ...seen, headers: { ...seen.headers } },
            { ...judged, headers: { ...judged.headers } },
          );
          assert.equal(matcher.match(seen).allowed, true, JSON.stringify(seen));
        }),
        { numRuns: 300 },
      );
      assert.ok(forwarded >= 5, `only ${forwarded} generated requests were forwarded`);
    } finally {
      await h.close();
    }
  });
});
