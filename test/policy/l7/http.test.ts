import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  compileHttpRules,
  httpRegexProblem,
  normalizeHttpPath,
  type HttpRequestLike,
} from "../../../src/policy/l7/http.js";
import type { HttpRule } from "../../../src/policy/types.js";
import { MembraneError } from "../../../src/errors.js";

const r = (x: Partial<HttpRule>): HttpRule => ({ headers: [], ...x });
const get = (path: string, extra: Partial<HttpRequestLike> = {}): HttpRequestLike => ({
  method: "GET",
  path,
  ...extra,
});

describe("compileHttpRules", () => {
  const cases: { name: string; rules: HttpRule[]; req: HttpRequestLike; want: boolean; index?: number }[] = [
    {
      name: "the empty rule matches every request",
      rules: [r({})],
      req: get("/anything"),
      want: true,
      index: 0,
    },
    { name: "no rules match nothing", rules: [], req: get("/"), want: false },
    {
      name: "path is a full-string match",
      rules: [r({ path: "/public" })],
      req: get("/public/x"),
      want: false,
    },
    {
      name: "path matches exactly",
      rules: [r({ path: "/public" })],
      req: get("/public"),
      want: true,
      index: 0,
    },
    {
      name: "path regex with .* matches below",
      rules: [r({ path: "/public/.*" })],
      req: get("/public/a/b"),
      want: true,
    },
    {
      name: "path regex is anchored at the start",
      rules: [r({ path: "/public" })],
      req: get("/x/public"),
      want: false,
    },
    {
      name: "alternation is anchored as a whole",
      rules: [r({ method: "GET|POST" })],
      req: { method: "GETPOST", path: "/" },
      want: false,
    },
    {
      name: "method alternation matches POST",
      rules: [r({ method: "GET|POST" })],
      req: { method: "POST", path: "/" },
      want: true,
    },
    {
      name: "method is case-sensitive as in Envoy",
      rules: [r({ method: "GET" })],
      req: { method: "get", path: "/" },
      want: false,
    },
    {
      name: "method and path inside one rule are ANDed",
      rules: [r({ method: "GET", path: "/a" })],
      req: { method: "POST", path: "/a" },
      want: false,
    },
    {
      name: "rules are ORed and the first match is reported",
      rules: [r({ method: "POST" }), r({ path: "/a" }), r({})],
      req: get("/a"),
      want: true,
      index: 1,
    },
    {
      name: "a dot in a path regex is any character",
      rules: [r({ path: "/v1.0" })],
      req: get("/v1x0"),
      want: true,
    },
    {
      name: ".* does not cross a newline",
      rules: [r({ path: "/public/.*" })],
      req: get("/public/x\n/admin"),
      want: false,
    },
    {
      name: "raw .. is matched as written (normalise first)",
      rules: [r({ path: "/public/.*" })],
      req: get("/public/../admin"),
      want: true,
    },
    {
      name: "normalised .. no longer matches the public rule",
      rules: [r({ path: "/public/.*" })],
      req: get(normalizeHttpPath("/public/../admin")),
      want: false,
    },
    {
      name: "%2F is not a slash for the matcher",
      rules: [r({ path: "/public/[^/]*" })],
      req: get("/public/a%2Fb"),
      want: true,
    },
    {
      name: "query string is part of the path",
      rules: [r({ path: "/search" })],
      req: get("/search?q=1"),
      want: false,
    },
    {
      name: "host matches the Host header",
      rules: [r({ host: "api\\.io" })],
      req: get("/", { headers: { Host: "api.io" } }),
      want: true,
    },
    {
      name: "host is matched with its port, as Envoy's :authority",
      rules: [r({ host: "api\\.io" })],
      req: get("/", { host: "api.io:8080" }),
      want: false,
    },
    {
      name: "host regex can allow any port",
      rules: [r({ host: "api\\.io(:[0-9]+)?" })],
      req: get("/", { host: "api.io:8080" }),
      want: true,
    },
    { name: "host rule fails without a host", rules: [r({ host: ".*" })], req: get("/"), want: false },
    {
      name: "explicit host wins over the Host header",
      rules: [r({ host: "a\\.io" })],
      req: get("/", { host: "b.io", headers: { host: "a.io" } }),
      want: false,
    },
    {
      name: "header name is case-insensitive",
      rules: [r({ headers: [{ name: "X-Token" }] })],
      req: get("/", { headers: { "x-token": "1" } }),
      want: true,
    },
    {
      name: "header without value needs presence",
      rules: [r({ headers: [{ name: "X-Token" }] })],
      req: get("/", { headers: { other: "1" } }),
      want: false,
    },
    {
      name: "header value is exact",
      rules: [r({ headers: [{ name: "X-Token", value: "abc" }] })],
      req: get("/", { headers: { "X-TOKEN": "abcd" } }),
      want: false,
    },
    {
      name: "header value is case-sensitive",
      rules: [r({ headers: [{ name: "x-token", value: "abc" }] })],
      req: get("/", { headers: { "x-token": "ABC" } }),
      want: false,
    },
    {
      name: "an empty header value is required to be empty",
      rules: [r({ headers: [{ name: "x-e", value: "" }] })],
      req: get("/", { headers: { "x-e": "" } }),
      want: true,
    },
    {
      name: "all headers of a rule must match",
      rules: [r({ headers: [{ name: "a", value: "1" }, { name: "b" }] })],
      req: get("/", { headers: { a: "1" } }),
      want: false,
    },
    {
      name: "regex metacharacters in the path are regex, not literal",
      rules: [r({ path: "/a+" })],
      req: get("/aaa"),
      want: true,
    },
    {
      name: "unicode paths match code points",
      rules: [r({ path: "/caf." })],
      req: get("/caf\u00e9"),
      want: true,
    },
    {
      name: "a NUL in the path is a character like any other",
      rules: [r({ path: "/a" })],
      req: get("/a\u0000"),
      want: false,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const v = compileHttpRules(c.rules).match(c.req);
      assert.equal(v.allowed, c.want);
      if (c.index !== undefined) assert.equal(v.ruleIndex, c.index);
      if (!c.want) assert.equal(v.ruleIndex, undefined);
    });
  }

  test("a pathological regex stays linear on a long path", () => {
    const m = compileHttpRules([r({ path: "(a+)+b" })]);
    const t0 = process.hrtime.bigint();
    assert.equal(m.match(get("a".repeat(100_000))).allowed, false);
    assert.ok(process.hrtime.bigint() - t0 < 2_000_000_000n, "matching took more than 2 s");
  });

  test("look-ahead is refused with the rule and field named", () => {
    assert.throws(
      () => compileHttpRules([r({}), r({ path: "(?=x)" })]),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "POLICY_INVALID" &&
        e.message.startsWith('Cannot compile HTTP path regex "(?=x)" of rule 1:') &&
        e.location?.path === "http[1].path",
    );
  });

  test("httpRegexProblem explains an unbalanced group and accepts a valid regex", () => {
    assert.match(httpRegexProblem("(a") ?? "", /missing closing \)/);
    assert.equal(httpRegexProblem("/api/v[0-9]+/.*"), undefined);
  });
});

describe("normalizeHttpPath", () => {
  const cases: { name: string; input: string; want: string }[] = [
    { name: "a plain path is unchanged", input: "/a/b", want: "/a/b" },
    { name: "dot-dot removes the previous segment", input: "/public/../admin", want: "/admin" },
    { name: "dot-dot cannot climb above the root", input: "/../../etc/passwd", want: "/etc/passwd" },
    { name: "single dots are removed", input: "/a/./b/.", want: "/a/b/" },
    { name: "encoded dots are decoded and removed", input: "/public/%2e%2E/admin", want: "/admin" },
    { name: "encoded slash stays encoded with upper-case hex", input: "/a%2fb", want: "/a%2Fb" },
    { name: "encoded unreserved characters are decoded", input: "/%7Euser/%41", want: "/~user/A" },
    { name: "the query string is left alone", input: "/a/../b?x=/../y", want: "/b?x=/../y" },
    { name: "trailing dot-dot keeps a trailing slash", input: "/a/b/..", want: "/a/" },
  ];
  for (const c of cases) test(c.name, () => assert.equal(normalizeHttpPath(c.input), c.want));
});
