/**
 * Routing decisions of the pure matcher, table-style, modelled on the
 * behaviours the Gateway API conformance suite checks for HTTPRoute:
 * path/header/query/method matching, precedence across rules and routes,
 * hostname intersection, 404 when nothing matches, 500 for unresolved
 * backends and all-zero weights, redirects, rewrites, header modifiers.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { decide, type RouteDecision } from "../../src/gateway/match.js";
import { modifyHeaders, rewritePath } from "../../src/gateway/filters.js";
import { CLASS, compileYaml, gateway, HTTP_ALL, req, route } from "./fixtures.js";

function portOf(text: string, port = 80) {
  const p = compileYaml(text).table.ports.find((x) => x.port === port);
  assert.ok(p, `port ${port} is served`);
  return p;
}

const backendOf = (d: RouteDecision): string =>
  d.kind === "forward"
    ? d.backend.name
    : d.kind === "not-found"
      ? "404"
      : d.kind === "error"
        ? "500"
        : d.kind === "misdirected"
          ? "421"
          : `${d.status} ${d.location}`;

describe("gateway matcher: which rule takes a request", () => {
  const matching = portOf(
    CLASS +
      gateway(HTTP_ALL) +
      route(
        "matching",
        `  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: v1, port: 8080}]
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /v2}, headers: [{name: Version, value: three}]}]
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {type: RegularExpression, value: "/regex/[0-9]+"}}]
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /q}, queryParams: [{name: animal, value: whale}]}]
    backendRefs: [{name: v3, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /m}, method: POST}]
    backendRefs: [{name: v2, port: 8080}]`,
      ),
  );
  const cases: [string, ReturnType<typeof req>, string][] = [
    ["the catch-all prefix / takes anything else", req("/other"), "v1"],
    ["an Exact path beats the / prefix", req("/exact"), "v2"],
    ["Exact means the whole path: /exact/more is not it", req("/exact/more"), "v1"],
    ["a prefix matches whole segments: /v2/x", req("/v2/x"), "v2"],
    ["a prefix does not match a longer segment: /v2x", req("/v2x"), "v1"],
    [
      "a header match wins over the same prefix without one",
      req("/v2/x", "example.com", { version: "three" }),
      "v3",
    ],
    [
      "header names are case-insensitive, values are not",
      req("/v2/x", "example.com", { VERSION: "Three" }),
      "v2",
    ],
    ["a regular expression matches the whole path", req("/regex/42"), "v3"],
    ["a regular expression does not match a part", req("/regex/42/x"), "v1"],
    ["a query parameter match", req("/q?animal=whale"), "v3"],
    ["a query parameter with another value", req("/q?animal=dolphin"), "v1"],
    ["a method match", req("/m", "example.com", {}, "POST"), "v2"],
    ["another method falls through", req("/m", "example.com", {}, "GET"), "v1"],
  ];
  for (const [name, r, want] of cases) test(name, () => assert.equal(backendOf(decide(matching, r)), want));

  test("precedence across routes: the longer prefix wins even in a newer route", () => {
    const p = portOf(
      CLASS +
        gateway(HTTP_ALL) +
        route(
          "old",
          `  rules: [{matches: [{path: {type: PathPrefix, value: /a}}], backendRefs: [{name: v1, port: 8080}]}]`,
          "infra",
          "2020-01-01T00:00:00Z",
        ) +
        route(
          "new",
          `  rules: [{matches: [{path: {type: PathPrefix, value: /a/b}}], backendRefs: [{name: v2, port: 8080}]}]`,
          "infra",
          "2024-01-01T00:00:00Z",
        ),
    );
    assert.equal(backendOf(decide(p, req("/a/b/c"))), "v2");
    assert.equal(backendOf(decide(p, req("/a/c"))), "v1");
  });

  test("precedence tie between routes: the older route wins, then namespace/name", () => {
    const body = (b: string): string =>
      `  rules: [{matches: [{path: {type: PathPrefix, value: /t}}], backendRefs: [{name: ${b}, port: 8080}]}]`;
    const older = portOf(
      CLASS +
        gateway(HTTP_ALL) +
        route("b", body("v1"), "infra", "2020-01-01T00:00:00Z") +
        route("a", body("v2"), "infra", "2024-01-01T00:00:00Z"),
    );
    assert.equal(backendOf(decide(older, req("/t"))), "v1");
    const byName = portOf(CLASS + gateway(HTTP_ALL) + route("b", body("v1")) + route("a", body("v2")));
    assert.equal(backendOf(decide(byName, req("/t"))), "v2");
  });

  test("no matching rule gives 404; a rule without backends gives 500", () => {
    const p = portOf(
      CLASS + gateway(HTTP_ALL) + route("r", `  rules: [{matches: [{path: {type: Exact, value: /only}}]}]`),
    );
    assert.equal(decide(p, req("/else")).kind, "not-found");
    assert.equal(backendOf(decide(p, req("/only"))), "500");
  });
});

describe("gateway matcher: hostnames", () => {
  const listeners = `  - {name: any, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: wild, port: 80, protocol: HTTP, hostname: "*.wild.com", allowedRoutes: {namespaces: {from: All}}}
  - {name: foo, port: 80, protocol: HTTP, hostname: "foo.wild.com", allowedRoutes: {namespaces: {from: All}}}`;
  const text =
    CLASS +
    gateway(listeners) +
    route(
      "on-any",
      `  parentRefs: [{name: gw, namespace: infra, sectionName: any}]\n  rules: [{backendRefs: [{name: v1, port: 8080}]}]`,
    ).replace("  parentRefs: [{name: gw, namespace: infra}]\n", "") +
    route(
      "on-wild",
      `  parentRefs: [{name: gw, namespace: infra, sectionName: wild}]\n  rules: [{backendRefs: [{name: v2, port: 8080}]}]`,
    ).replace("  parentRefs: [{name: gw, namespace: infra}]\n", "") +
    route(
      "on-foo",
      `  parentRefs: [{name: gw, namespace: infra, sectionName: foo}]\n  rules: [{backendRefs: [{name: v3, port: 8080}]}]`,
    ).replace("  parentRefs: [{name: gw, namespace: infra}]\n", "");
  const p = portOf(text);
  const cases: [string, string, string][] = [
    ["the exact listener hostname wins", "foo.wild.com", "v3"],
    ["the wildcard listener takes other subdomains", "bar.wild.com", "v2"],
    ["the wildcard takes several labels", "a.b.wild.com", "v2"],
    ["the wildcard does not take the bare domain", "wild.com", "v1"],
    ["a port in Host is ignored", "foo.wild.com:80", "v3"],
    ["Host is case-insensitive", "FOO.Wild.com", "v3"],
  ];
  for (const [name, host, want] of cases)
    test(name, () => assert.equal(backendOf(decide(p, req("/", host))), want));

  test("route hostnames intersect the listener's; the most specific route hostname wins", () => {
    const t =
      CLASS +
      gateway(
        `  - {name: wild, port: 80, protocol: HTTP, hostname: "*.example.com", allowedRoutes: {namespaces: {from: All}}}`,
      ) +
      route(
        "specific",
        `  hostnames: ["very.specific.example.com"]\n  rules: [{backendRefs: [{name: v1, port: 8080}]}]`,
      ) +
      route(
        "wider",
        `  hostnames: ["*.specific.example.com"]\n  rules: [{backendRefs: [{name: v2, port: 8080}]}]`,
      ) +
      route("outside", `  hostnames: ["other.org"]\n  rules: [{backendRefs: [{name: v3, port: 8080}]}]`);
    const c = compileYaml(t);
    const q = c.table.ports[0];
    assert.ok(q);
    assert.equal(backendOf(decide(q, req("/", "very.specific.example.com"))), "v1");
    assert.equal(backendOf(decide(q, req("/", "x.specific.example.com"))), "v2");
    assert.equal(backendOf(decide(q, req("/", "other.org"))), "404");
    const outside = c.status.routes
      .get("HTTPRoute/infra/outside")
      ?.parents[0]?.conditions.find((x) => x.type === "Accepted");
    assert.equal(outside?.status, "False");
    assert.equal(outside?.reason, "NoMatchingListenerHostname");
  });
});

describe("gateway matcher: backends", () => {
  test("weights split requests; weight 0 is never chosen", () => {
    const p = portOf(
      CLASS +
        gateway(HTTP_ALL) +
        route(
          "w",
          `  rules: [{backendRefs: [{name: v1, port: 8080, weight: 3}, {name: v2, port: 8080, weight: 1}, {name: v3, port: 8080, weight: 0}]}]`,
        ),
    );
    const counts: Record<string, number> = {};
    for (let i = 0; i < 400; i++) {
      const d = decide(p, req("/"), () => (i + 0.5) / 400);
      counts[backendOf(d)] = (counts[backendOf(d)] ?? 0) + 1;
    }
    assert.deepEqual(counts, { v1: 300, v2: 100 });
  });

  test("every weight 0 gives 500", () => {
    const p = portOf(
      CLASS + gateway(HTTP_ALL) + route("w", `  rules: [{backendRefs: [{name: v1, port: 8080, weight: 0}]}]`),
    );
    assert.equal(backendOf(decide(p, req("/"))), "500");
  });

  test("a missing Service gives 500 for its share, and ResolvedRefs=False BackendNotFound", () => {
    const c = compileYaml(
      CLASS + gateway(HTTP_ALL) + route("m", `  rules: [{backendRefs: [{name: missing, port: 8080}]}]`),
    );
    const p = c.table.ports[0];
    assert.ok(p);
    assert.equal(backendOf(decide(p, req("/"))), "500");
    const parent = c.status.routes.get("HTTPRoute/infra/m")?.parents[0];
    const rr = parent?.conditions.find((x) => x.type === "ResolvedRefs");
    assert.equal(rr?.reason, "BackendNotFound");
    assert.equal(parent?.conditions.find((x) => x.type === "Accepted")?.status, "True");
  });
});

describe("gateway filters", () => {
  const redirects = portOf(
    CLASS +
      gateway(HTTP_ALL) +
      route(
        "r",
        `  rules:
  - matches: [{path: {type: PathPrefix, value: /scheme}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]
  - matches: [{path: {type: PathPrefix, value: /host}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org, statusCode: 301}}]
  - matches: [{path: {type: PathPrefix, value: /port}}]
    filters: [{type: RequestRedirect, requestRedirect: {port: 8083}}]
  - matches: [{path: {type: PathPrefix, value: /full}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}}}]
  - matches: [{path: {type: PathPrefix, value: /prefix}}]
    filters: [{type: RequestRedirect, requestRedirect: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /replaced}, statusCode: 308}}]
  - matches: [{path: {type: PathPrefix, value: /both}}]
    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 8443}}]`,
      ),
  );
  const cases: [string, string, string][] = [
    [
      "scheme https: default port 443 left out of Location",
      "/scheme/x?a=b",
      "302 https://example.com/scheme/x?a=b",
    ],
    ["hostname and status 301", "/host", "301 http://example.org/host"],
    ["port only: scheme stays, port shown", "/port", "302 http://example.com:8083/port"],
    ["ReplaceFullPath", "/full/deep", "302 http://example.com/new"],
    [
      "ReplacePrefixMatch keeps the rest of the path, status 308",
      "/prefix/one",
      "308 http://example.com/replaced/one",
    ],
    ["scheme and a non-default port", "/both", "302 https://example.com:8443/both"],
  ];
  for (const [name, target, want] of cases)
    test(`redirect: ${name}`, () =>
      assert.equal(backendOf(decide(redirects, req(target, "example.com:80"))), want));

  const rewrites: [string, string, string, string][] = [
    ["/prefix/one", "/prefix/one/two", "/one", "/one/two"],
    ["/strip-prefix", "/strip-prefix/three", "/", "/three"],
    ["/strip-prefix", "/strip-prefix", "/", "/"],
    ["", "/anything", "/base", "/base/anything"],
    ["/a", "/a/", "/b/", "/b/"],
  ];
  for (const [prefix, path, to, want] of rewrites)
    test(`ReplacePrefixMatch ${prefix || "/"} -> ${to} on ${path} gives ${want}`, () =>
      assert.equal(rewritePath(path, { type: "ReplacePrefixMatch", value: to }, prefix), want));

  test("URLRewrite: hostname replaces Host, full path replaced, query kept", () => {
    const p = portOf(
      CLASS +
        gateway(HTTP_ALL) +
        route(
          "u",
          `  rules: [{matches: [{path: {type: PathPrefix, value: /full}}], filters: [{type: URLRewrite, urlRewrite: {hostname: one.example.org, path: {type: ReplaceFullPath, replaceFullPath: /one}}}], backendRefs: [{name: v1, port: 8080}]}]`,
        ),
    );
    const d = decide(p, req("/full/x?y=1"));
    assert.equal(d.kind, "forward");
    if (d.kind !== "forward") return;
    assert.equal(d.request.target, "/one?y=1");
    assert.equal(d.request.headers.find((h) => h.name.toLowerCase() === "host")?.value, "one.example.org");
  });

  test("header modifier: set overwrites, add appends with a comma, remove drops, names case-insensitive", () => {
    const out = modifyHeaders(
      [
        { name: "x-header-set", value: "original" },
        { name: "x-header-add", value: "original-add" },
        { name: "x-header-remove", value: "gone" },
        { name: "Another", value: "kept" },
      ],
      {
        set: [{ name: "X-Header-Set", value: "header-set" }],
        add: [
          { name: "X-Header-Add", value: "header-add" },
          { name: "X-New", value: "n" },
        ],
        remove: ["X-Header-Remove"],
      },
    );
    assert.deepEqual(out, [
      { name: "X-Header-Set", value: "header-set" },
      { name: "x-header-add", value: "original-add,header-add" },
      { name: "Another", value: "kept" },
      { name: "X-New", value: "n" },
    ]);
  });
});
