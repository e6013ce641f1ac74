/**
 * Gateway API conformance, replayed (root): the suite's request-matching
 * HTTPRoute cases through the real gateway process to echo pods, each with its
 * own routes on the suite's shared Gateways. Path prefix/exact matching,
 * header, query parameter and method matches with the spec's precedence,
 * precedence across routes, path-match order, route/listener hostname
 * intersection, listener hostname and port matching, and the status each
 * case waits for (Accepted, ResolvedRefs, listener Programmed, attachedRoutes).
 * The cases are written here in our words from the suite's contract.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConformanceLab, gatewayYaml, INFRA } from "./conformance-lab.js";
import { cond, judge, to, type Case } from "./conformance-check.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const V1 = "infra-backend-v1";
const V2 = "infra-backend-v2";
const V3 = "infra-backend-v3";
const NOT_FOUND = { status: 404 };

/** An HTTPRoute in the infra namespace; `body` is its spec below parentRefs (YAML, 2-space indented). */
function route(name: string, body: string, parent = "same-namespace", extra = ""): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
  parentRefs: [{name: ${parent}${extra}}]
${body}
`;
}

const be = (name: string, port = 8080): string => `{name: ${name}, port: ${port}}`;

describe("Gateway API conformance: request matching (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
  });
  after(async () => {
    await lab?.destroy();
  });

  async function replay(cases: Case[]): Promise<void> {
    judge(cases, await lab.send(cases.map((c) => c.req)));
  }

  function accepted(routeName: string, gw = "same-namespace"): void {
    const cs = lab.routeConditions(`${INFRA}/${routeName}`, gw);
    assert.equal(cond(cs, "Accepted"), "True/Accepted", routeName);
    assert.equal(cond(cs, "ResolvedRefs"), "True/ResolvedRefs", routeName);
  }

  test("HTTPRouteSimpleSameNamespace and HTTPRouteMatching: a prefix or a header match picks the rule", async () => {
    await lab.apply(
      route(
        "matching",
        `  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [${be(V1)}]
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [${be(V2)}]`,
      ),
    );
    accepted("matching");
    const gw = lab.status().gateways.get(`Gateway/${INFRA}/same-namespace`);
    assert.equal(cond(gw?.conditions, "Programmed"), "True/Programmed");
    assert.equal(gw?.listeners[0]?.attachedRoutes, 1);
    assert.equal(cond(gw?.listeners[0]?.conditions, "Programmed"), "True/Programmed");
    await replay([
      { req: { path: "/" }, want: to(V1) },
      { req: { path: "/example" }, want: to(V1) },
      { req: { path: "/", headers: { Version: "one" } }, want: to(V1) },
      { req: { path: "/v2" }, want: to(V2) },
      { req: { path: "/v2/example" }, want: to(V2) },
      { req: { path: "/", headers: { Version: "two" } }, want: to(V2) },
      { req: { path: "/v2/" }, want: to(V2) },
      { req: { path: "/v2example" }, want: to(V1) },
      { req: { path: "/foo/v2/example" }, want: to(V1) },
    ]);
  });

  test("HTTPRouteMatchingAcrossRoutes: rules of two routes on one hostname are ordered together", async () => {
    await lab.apply(
      route(
        "matching-part1",
        `  hostnames: [example.com, example.net]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [${be(V1)}]`,
      ) +
        route(
          "matching-part2",
          `  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [${be(V2)}]`,
        ),
    );
    accepted("matching-part1");
    accepted("matching-part2");
    await replay([
      { req: { host: "example.com", path: "/" }, want: to(V1) },
      { req: { host: "example.com", path: "/example" }, want: to(V1) },
      { req: { host: "example.net", path: "/example" }, want: to(V1) },
      { req: { host: "example.com", path: "/example", headers: { Version: "one" } }, want: to(V1) },
      { req: { host: "example.com", path: "/v2" }, want: to(V2) },
      { req: { host: "example.net", path: "/v2" }, want: to(V1) },
      { req: { host: "example.com", path: "/v2/example" }, want: to(V2) },
      { req: { host: "example.com", path: "/", headers: { Version: "two" } }, want: to(V2) },
    ]);
  });

  test("HTTPRouteExactPathMatching: only the exact path, case-sensitive", async () => {
    await lab.apply(
      route(
        "exact-matching",
        `  rules:
  - matches: [{path: {type: Exact, value: /one}}]
    backendRefs: [${be(V1)}]
  - matches: [{path: {type: Exact, value: /two}}]
    backendRefs: [${be(V2)}]`,
      ),
    );
    accepted("exact-matching");
    await replay([
      { req: { path: "/one" }, want: to(V1) },
      { req: { path: "/two" }, want: to(V2) },
      { req: { path: "/" }, want: NOT_FOUND },
      { req: { path: "/one/example" }, want: NOT_FOUND },
      { req: { path: "/two/" }, want: NOT_FOUND },
      { req: { path: "/Two" }, want: NOT_FOUND },
    ]);
  });

  test("HTTPRouteHeaderMatching: ANDed headers in a match, ORed matches, more headers first", async () => {
    await lab.apply(
      route(
        "header-matching",
        `  rules:
  - matches: [{headers: [{name: version, value: one}]}]
    backendRefs: [${be(V1)}]
  - matches: [{headers: [{name: version, value: two}]}]
    backendRefs: [${be(V2)}]
  - matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}]
    backendRefs: [${be(V1)}]
  - matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}]
    backendRefs: [${be(V1)}]
  - matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}]
    backendRefs: [${be(V2)}]`,
      ),
    );
    accepted("header-matching");
    const h = (headers: Record<string, string>) => ({ path: "/", headers });
    await replay([
      { req: h({ Version: "one" }), want: to(V1) },
      { req: h({ Version: "two" }), want: to(V2) },
      { req: h({ Version: "two", Color: "orange" }), want: to(V1) },
      { req: h({ Version: "two", Color: "blue" }), want: to(V2) },
      { req: h({ Color: "orange" }), want: NOT_FOUND },
      { req: h({ "Some-Other-Header": "one" }), want: NOT_FOUND },
      { req: h({ Color: "blue" }), want: to(V1) },
      { req: h({ Color: "green" }), want: to(V1) },
      { req: h({ Color: "red" }), want: to(V2) },
      { req: h({ Color: "yellow" }), want: to(V2) },
      { req: h({ Color: "purple" }), want: NOT_FOUND },
    ]);
  });

  test("HTTPRouteQueryParamMatching: exact values, case-sensitive names, precedence after path and headers", async () => {
    const q = (pairs: string) => `{queryParams: [${pairs}]}`;
    await lab.apply(
      route(
        "query-param-matching",
        `  rules:
  - matches: [${q("{name: animal, value: whale}")}]
    backendRefs: [${be(V1)}]
  - matches: [${q("{name: animal, value: dolphin}")}]
    backendRefs: [${be(V2)}]
  - matches: [${q("{name: animal, value: dolphin}, {name: color, value: blue}")}, ${q("{name: ANIMAL, value: Whale}")}]
    backendRefs: [${be(V3)}]
  - matches: [{path: {type: PathPrefix, value: /path1}, queryParams: [{name: animal, value: whale}]}]
    backendRefs: [${be(V1)}]
  - matches: [{headers: [{name: version, value: one}], queryParams: [{name: animal, value: whale}]}]
    backendRefs: [${be(V2)}]
  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], queryParams: [{name: animal, value: whale}]}]
    backendRefs: [${be(V3)}]
  - matches:
    - {path: {type: PathPrefix, value: /path3}, queryParams: [{name: animal, value: shark}]}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], queryParams: [{name: animal, value: kraken}]}
    backendRefs: [${be(V1)}]
  - matches: [{path: {type: PathPrefix, value: /path5}}]
    backendRefs: [${be(V1)}]
  - matches: [${q("{name: animal, value: hydra}")}]
    backendRefs: [${be(V2)}]
  - matches: [{headers: [{name: version, value: four}]}]
    backendRefs: [${be(V3)}]`,
      ),
    );
    accepted("query-param-matching");
    await replay([
      { req: { path: "/?animal=whale" }, want: to(V1) },
      { req: { path: "/?animal=dolphin" }, want: to(V2) },
      { req: { path: "/?animal=dolphin&color=blue" }, want: to(V3) },
      { req: { path: "/?ANIMAL=Whale" }, want: to(V3) },
      { req: { path: "/?animal=whale&otherparam=irrelevant" }, want: to(V1) },
      { req: { path: "/?animal=dolphin&color=yellow" }, want: to(V2) },
      { req: { path: "/?color=blue" }, want: NOT_FOUND },
      { req: { path: "/?animal=dog" }, want: NOT_FOUND },
      { req: { path: "/?animal=whaledolphin" }, want: NOT_FOUND },
      { req: { path: "/" }, want: NOT_FOUND },
      { req: { path: "/path1?animal=whale" }, want: to(V1) },
      { req: { path: "/?animal=whale", headers: { version: "one" } }, want: to(V2) },
      { req: { path: "/path2?animal=whale", headers: { version: "two" } }, want: to(V3) },
      { req: { path: "/path3?animal=shark" }, want: to(V1) },
      { req: { path: "/path4?animal=kraken", headers: { version: "three" } }, want: to(V1) },
      { req: { path: "/?animal=shark" }, want: NOT_FOUND },
      { req: { path: "/path4?animal=kraken" }, want: NOT_FOUND },
      { req: { path: "/path5?animal=hydra" }, want: to(V1) },
      { req: { path: "/?animal=hydra", headers: { version: "four" } }, want: to(V3) },
    ]);
  });

  test("HTTPRouteMethodMatching: the method alone or with path and headers; a method beats headers", async () => {
    await lab.apply(
      route(
        "method-matching",
        `  rules:
  - matches: [{method: POST}]
    backendRefs: [${be(V1)}]
  - matches: [{method: GET}]
    backendRefs: [${be(V2)}]
  - matches: [{path: {type: PathPrefix, value: /path1}, method: GET}]
    backendRefs: [${be(V1)}]
  - matches: [{headers: [{name: version, value: one}], method: PUT}]
    backendRefs: [${be(V2)}]
  - matches: [{path: {type: PathPrefix, value: /path2}, headers: [{name: version, value: two}], method: POST}]
    backendRefs: [${be(V3)}]
  - matches:
    - {path: {type: PathPrefix, value: /path3}, method: PATCH}
    - {path: {type: PathPrefix, value: /path4}, headers: [{name: version, value: three}], method: DELETE}
    backendRefs: [${be(V1)}]
  - matches: [{path: {type: PathPrefix, value: /path5}}]
    backendRefs: [${be(V1)}]
  - matches: [{method: PATCH}]
    backendRefs: [${be(V2)}]
  - matches: [{headers: [{name: version, value: four}]}]
    backendRefs: [${be(V3)}]`,
      ),
    );
    accepted("method-matching");
    const m = (method: string, path: string, headers?: Record<string, string>) => ({
      method,
      path,
      ...(headers ? { headers } : {}),
    });
    await replay([
      { req: m("POST", "/"), want: to(V1, { method: "POST" }) },
      { req: m("GET", "/"), want: to(V2) },
      { req: m("HEAD", "/"), want: NOT_FOUND },
      { req: m("GET", "/path1"), want: to(V1) },
      { req: m("PUT", "/", { version: "one" }), want: to(V2, { method: "PUT" }) },
      { req: m("POST", "/path2", { version: "two" }), want: to(V3, { method: "POST" }) },
      { req: m("PATCH", "/path3"), want: to(V1, { method: "PATCH" }) },
      { req: m("DELETE", "/path4", { version: "three" }), want: to(V1, { method: "DELETE" }) },
      { req: m("PUT", "/"), want: NOT_FOUND },
      { req: m("DELETE", "/path4"), want: NOT_FOUND },
      { req: m("PATCH", "/path5"), want: to(V1, { method: "PATCH" }) },
      { req: m("PATCH", "/", { version: "four" }), want: to(V2, { method: "PATCH" }) },
    ]);
  });

  test("HTTPRoutePathMatchOrder: exact before prefix, longer prefix first, trailing slash irrelevant", async () => {
    const r = (type: string, value: string, b: string) =>
      `  - matches: [{path: {type: ${type}, value: ${value}}}]\n    backendRefs: [${be(b)}]`;
    await lab.apply(
      route(
        "path-matching-order",
        `  rules:\n${[
          r("Exact", "/match", V1),
          r("Exact", "/match/exact", V2),
          r("Exact", "/match/exact/one", V3),
          r("PathPrefix", "/match/", V3),
          r("PathPrefix", "/match/prefix/", V1),
          r("PathPrefix", "/match/prefix/one", V2),
        ].join("\n")}`,
      ),
    );
    accepted("path-matching-order");
    await replay([
      { req: { path: "/match/exact/one" }, want: to(V3) },
      { req: { path: "/match/exact" }, want: to(V2) },
      { req: { path: "/match" }, want: to(V1) },
      { req: { path: "/match/prefix/one/any" }, want: to(V2) },
      { req: { path: "/match/prefix/any" }, want: to(V1) },
      { req: { path: "/match/any" }, want: to(V3) },
    ]);
  });

  test("HTTPRouteHostnameIntersection: a route serves where its hostnames and the listener's intersect", async () => {
    const GW = "httproute-hostname-intersection";
    const listener = (n: number, host: string) =>
      `{name: listener-${n}, port: 80, protocol: HTTP, hostname: "${host}", allowedRoutes: {namespaces: {from: Same}}}`;
    const r = (name: string, hosts: string, prefix: string, b: string, parent = GW) =>
      route(
        name,
        `  hostnames: [${hosts}]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]\n    backendRefs: [${be(b)}]`,
        parent,
        `, namespace: ${INFRA}`,
      );
    await lab.apply(
      gatewayYaml(GW, [
        listener(1, "very.specific.com"),
        listener(2, "*.wildcard.io"),
        listener(3, "*.anotherwildcard.io"),
      ]) +
        gatewayYaml(`${GW}-all`, [`{name: listener-1, port: 80, protocol: HTTP}`]) +
        r(
          "specific-host-matches-listener-specific-host",
          `non.matching.com, "*.nonmatchingwildcard.io", very.specific.com`,
          "/s1",
          V1,
        ) +
        r(
          "specific-host-matches-listener-wildcard-host",
          "non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io",
          "/s2",
          V2,
        ) +
        r("wildcard-host-matches-listener-specific-host", `non.matching.com, "*.specific.com"`, "/s3", V3) +
        r("wildcard-host-matches-listener-wildcard-host", `"*.anotherwildcard.io"`, "/s4", V1) +
        r("no-intersecting-hosts", "specific.but.wrong.com, wildcard.io", "/s5", V2) +
        r(`${GW}-all`, "first.com, sub.first.com, second.com, sub.second.com", "/", V2, `${GW}-all`),
    );
    for (const n of [
      "specific-host-matches-listener-specific-host",
      "specific-host-matches-listener-wildcard-host",
      "wildcard-host-matches-listener-specific-host",
      "wildcard-host-matches-listener-wildcard-host",
    ])
      // prettier-ignore
      accepted(n, GW);
    accepted(`${GW}-all`, `${GW}-all`);
    const none = lab.routeConditions(`${INFRA}/no-intersecting-hosts`, GW);
    assert.equal(cond(none, "Accepted"), "False/NoMatchingListenerHostname");
    const gw = lab.status().gateways.get(`Gateway/${INFRA}/${GW}`);
    assert.deepEqual(
      gw?.listeners.map((l) => [l.name, l.attachedRoutes, cond(l.conditions, "Programmed")]),
      [
        ["listener-1", 2, "True/Programmed"],
        ["listener-2", 1, "True/Programmed"],
        ["listener-3", 1, "True/Programmed"],
      ],
    );
    const at = (host: string, path: string) => ({ host, path });
    await replay([
      { req: at("very.specific.com", "/s1"), want: to(V1) },
      { req: at("very.specific.com:1234", "/s1"), want: to(V1) },
      { req: at("non.matching.com", "/s1"), want: NOT_FOUND },
      { req: at("foo.nonmatchingwildcard.io", "/s1"), want: NOT_FOUND },
      { req: at("foo.wildcard.io", "/s1"), want: NOT_FOUND },
      { req: at("very.specific.com", "/non-matching-prefix"), want: NOT_FOUND },
      { req: at("foo.wildcard.io", "/s2"), want: to(V2) },
      { req: at("bar.wildcard.io", "/s2"), want: to(V2) },
      { req: at("foo.bar.wildcard.io", "/s2"), want: to(V2) },
      { req: at("non.matching.com", "/s2"), want: NOT_FOUND },
      { req: at("wildcard.io", "/s2"), want: NOT_FOUND },
      { req: at("very.specific.com", "/s2"), want: NOT_FOUND },
      { req: at("foo.wildcard.io", "/non-matching-prefix"), want: NOT_FOUND },
      { req: at("very.specific.com", "/s3"), want: to(V3) },
      { req: at("non.matching.com", "/s3"), want: NOT_FOUND },
      { req: at("foo.specific.com", "/s3"), want: NOT_FOUND },
      { req: at("foo.wildcard.io", "/s3"), want: NOT_FOUND },
      { req: at("foo.anotherwildcard.io", "/s4"), want: to(V1) },
      { req: at("bar.anotherwildcard.io", "/s4"), want: to(V1) },
      { req: at("foo.bar.anotherwildcard.io", "/s4"), want: to(V1) },
      { req: at("anotherwildcard.io", "/s4"), want: NOT_FOUND },
      { req: at("foo.wildcard.io", "/s4"), want: NOT_FOUND },
      { req: at("very.specific.com", "/s4"), want: NOT_FOUND },
      { req: at("specific.but.wrong.com", "/s5"), want: NOT_FOUND },
      { req: at("wildcard.io", "/s5"), want: NOT_FOUND },
      { req: at("first.com", "/"), want: to(V2) },
      { req: at("sub.second.com", "/"), want: to(V2) },
    ]);
  });

  test("HTTPRouteListenerHostnameMatching: the most specific listener hostname takes the request", async () => {
    const GW = "httproute-listener-hostname-matching";
    const hosts = ["bar.com", "foo.bar.com", "*.bar.com", "*.foo.com"];
    const ref = (n: number) => `{name: ${GW}, namespace: ${INFRA}, sectionName: listener-${n}}`;
    const r = (name: string, refs: string, b: string) => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
  parentRefs: [${refs}]
  rules: [{backendRefs: [${be(b)}]}]
`;
    await lab.apply(
      gatewayYaml(
        GW,
        hosts.map((h, i) => `{name: listener-${i + 1}, port: 80, protocol: HTTP, hostname: "${h}"}`),
      ) +
        r("backend-v1", ref(1), V1) +
        r("backend-v2", ref(2), V2) +
        r("backend-v3", `${ref(3)}, ${ref(4)}`, V3),
    );
    for (const n of ["backend-v1", "backend-v2", "backend-v3"]) accepted(n, GW);
    const at = (host: string) => ({ host, path: "/" });
    await replay([
      { req: at("bar.com"), want: to(V1) },
      { req: at("foo.bar.com"), want: to(V2) },
      { req: at("baz.bar.com"), want: to(V3) },
      { req: at("boo.bar.com"), want: to(V3) },
      { req: at("multiple.prefixes.bar.com"), want: to(V3) },
      { req: at("multiple.prefixes.foo.com"), want: to(V3) },
      { req: at("foo.com"), want: NOT_FOUND },
      { req: at("no.matching.host"), want: NOT_FOUND },
    ]);
  });

  test("HTTPRouteListenerPortMatching: parentRef port picks the listeners of that port", async () => {
    const GW = "httproute-listener-port-matching";
    const ls: [number, string][] = [
      [80, "foo.com"],
      [8080, "foo.com"],
      [8080, "bar.com"],
      [8090, "foo.com"],
      [8090, "bar.com"],
    ];
    const r = (name: string, ref: string, b: string) =>
      route(name, `  rules: [{backendRefs: [${be(b)}]}]`, GW, ref);
    await lab.apply(
      gatewayYaml(
        GW,
        ls.map(([p, h], i) => `{name: listener-${i + 1}, port: ${p}, protocol: HTTP, hostname: ${h}}`),
      ) +
        r("backend-v1", `, namespace: ${INFRA}, port: 80`, V1) +
        r("backend-v2", `, namespace: ${INFRA}, port: 8080`, V2) +
        r("backend-v3", `, namespace: ${INFRA}, port: 8090, sectionName: listener-4`, V3),
    );
    for (const n of ["backend-v1", "backend-v2", "backend-v3"]) accepted(n, GW);
    const at = (host: string, port: number) => ({
      host: port === 80 ? host : `${host}:${port}`,
      path: "/",
      port,
    });
    await replay([
      { req: at("foo.com", 80), want: to(V1) },
      { req: at("foo.com", 8080), want: to(V2) },
      { req: at("bar.com", 8080), want: to(V2) },
      { req: at("foo.com", 8090), want: to(V3) },
      { req: at("bar.com", 8090), want: NOT_FOUND },
    ]);
  });
});
