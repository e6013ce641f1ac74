/**
 * Gateway API conformance, replayed (root): the suite's HTTPRoute cases about
 * references, attachment and status, through the real gateway process to echo
 * pods. Cross-namespace routes (allowedRoutes Selector), ReferenceGrant (given,
 * then withdrawn; wrong in each field; partly valid routes), invalid backendRefs
 * (unknown kind, missing Service, other namespace without a grant) answered 500
 * with the ResolvedRefs reason, parentRefs naming no listener (port,
 * sectionName) or a disallowed kind or namespace (Accepted False with the
 * reason, no attached routes), rules without backendRefs (500), weights
 * (70/30/0), named rules, a route on two Gateways (MultipleGateways: each on
 * its own address), and an HTTPS listener's hostnames. The cases are written
 * here in our words from the suite's contract.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { APP, ConformanceLab, gatewayYaml, INFRA, WEB } from "./conformance-lab.js";
import { cond, judge, to, type Case } from "./conformance-check.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const V1 = "infra-backend-v1";
const V2 = "infra-backend-v2";
const V3 = "infra-backend-v3";

function route(ns: string, name: string, parents: string, rules: string, more = ""): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${ns}}
spec:
  parentRefs: [${parents}]
${more}  rules:
${rules}
`;
}

function grant(ns: string, name: string, from: string, to: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: ${name}, namespace: ${ns}}
spec:
  from: [${from}]
  to: [${to}]
`;
}

const ROUTE_FROM_INFRA = `{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: ${INFRA}}`;
const SAME = "{name: same-namespace}";

/** The four HTTPS listeners of the suite's same-namespace-with-https-listener Gateway (two tests use it). */
const httpsListener = (name: string, host?: string): string =>
  `{name: ${name}, port: 443, protocol: HTTPS${host ? `, hostname: "${host}"` : ""}, tls: {certificateRefs: [{name: tls-validity-checks-certificate}]}}`;
const HTTPS_LISTENERS = [
  httpsListener("https"),
  httpsListener("https-with-hostname", "second-example.org"),
  httpsListener("https-with-wildcard-hostname", "*.wildcard.org"),
  httpsListener("https-with-hostname-matching-wildcard", "fourth-example.wildcard.org"),
];

describe("Gateway API conformance: references, attachment and status (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
    lab.certificate(INFRA, "tls-validity-checks-certificate", [
      "example.org",
      "*.example.org",
      "second-example.org",
    ]);
  });
  after(async () => {
    await lab?.destroy();
  });

  const replay = async (cases: Case[]): Promise<void> =>
    judge(cases, await lab.send(cases.map((c) => c.req)));
  const conds = (r: string, gw = "same-namespace"): string => {
    const cs = lab.routeConditions(r, gw);
    return `${cond(cs, "Accepted")} ${cond(cs, "ResolvedRefs")}`;
  };
  const OK = "True/Accepted True/ResolvedRefs";
  const routesOn = (gw: string): number[] | undefined =>
    lab
      .status()
      .gateways.get(`Gateway/${INFRA}/${gw}`)
      ?.listeners.map((l) => l.attachedRoutes);

  test("HTTPRouteCrossNamespace, HTTPRouteReferenceGrant (then withdrawn), NamedRule, a route on two Gateways sharing an address", async () => {
    const toWeb = `    backendRefs: [{name: web-backend, namespace: ${WEB}, port: 8080}]`;
    const withGrant = (g: boolean) =>
      route(WEB, "cross-namespace", `{name: backend-namespaces, namespace: ${INFRA}}`, `  - backendRefs: [{name: web-backend, port: 8080}]`) +
      route(INFRA, "reference-grant", SAME, `  - matches: [{path: {type: PathPrefix, value: /grant}}]\n${toWeb}`) +
      route(INFRA, "http-named-rules", SAME, `  - name: named-rule\n    matches: [{path: {type: PathPrefix, value: /named}}]\n    backendRefs: [{name: ${V1}, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /unnamed}}]\n    backendRefs: [{name: ${V2}, port: 8080}]`) +
      route(INFRA, "multiple-gateways-shared-route", `${SAME}, {name: all-namespaces}`, `  - matches: [{path: {type: PathPrefix, value: /shared}}]\n    backendRefs: [{name: ${V1}, port: 8080}]`) +
      (g ? grant(WEB, "reference-grant", ROUTE_FROM_INFRA, `{group: "", kind: Service, name: web-backend}`) : ""); // prettier-ignore
    await lab.apply(withGrant(true));
    assert.equal(conds(`${WEB}/cross-namespace`, "backend-namespaces"), OK);
    assert.equal(conds(`${INFRA}/reference-grant`), OK);
    assert.equal(conds(`${INFRA}/http-named-rules`), OK);
    assert.equal(conds(`${INFRA}/multiple-gateways-shared-route`), OK);
    assert.equal(conds(`${INFRA}/multiple-gateways-shared-route`, "all-namespaces"), OK);
    const web = { backend: "web-backend", namespace: WEB };
    await replay([
      { req: { path: "/" }, want: web },
      { req: { path: "/grant" }, want: web },
      { req: { path: "/named" }, want: to(V1) },
      { req: { path: "/unnamed" }, want: to(V2) },
      { req: { path: "/shared" }, want: to(V1) },
    ]);
    await lab.apply(withGrant(false));
    assert.equal(conds(`${INFRA}/reference-grant`), "True/Accepted False/RefNotPermitted");
    await replay([
      { req: { path: "/grant" }, want: { status: 500 } },
      { req: { path: "/" }, want: web },
    ]);
  });

  test("HTTPRouteMultipleGateways: each Gateway on its own address; the shared route on both, a dedicated route on each", async () => {
    const own = { "same-namespace": "10.232.4.1", "all-namespaces": "10.232.4.2" };
    await lab.apply(
      route(INFRA, "multiple-gateways-shared-route", `${SAME}, {name: all-namespaces}`, `  - matches: [{path: {type: PathPrefix, value: /shared}}]\n    backendRefs: [{name: ${V1}, port: 8080}]`) +
        route(INFRA, "same-namespace-dedicated-route", SAME, `  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: ${V2}, port: 8080}]`) +
        route(INFRA, "all-namespaces-dedicated-route", "{name: all-namespaces}", `  - matches: [{path: {type: PathPrefix, value: /}}]\n    backendRefs: [{name: ${V3}, port: 8080}]`),
      own,
    ); // prettier-ignore
    for (const [r, gw] of [
      ["multiple-gateways-shared-route", "same-namespace"],
      ["multiple-gateways-shared-route", "all-namespaces"],
      ["same-namespace-dedicated-route", "same-namespace"],
      ["all-namespaces-dedicated-route", "all-namespaces"],
    ])
      // prettier-ignore
      assert.equal(conds(`${INFRA}/${r}`, gw), OK, `${r} on ${gw}`);
    // As the suite does: each Gateway's address is read from its status.
    const at = (gw: string): string => {
      const a = lab
        .status()
        .gateways.get(`Gateway/${INFRA}/${gw}`)
        ?.addresses.map((x) => x.value);
      assert.deepEqual(a, [own[gw as keyof typeof own]]);
      return a?.[0] ?? "";
    };
    const [a, b] = [at("same-namespace"), at("all-namespaces")];
    await replay([
      { req: { path: "/shared", address: a }, want: to(V1) },
      { req: { path: "/", address: a }, want: to(V2) },
      { req: { path: "/shared", address: b }, want: to(V1) },
      { req: { path: "/", address: b }, want: to(V3) },
    ]);
  });

  test("HTTPRouteInvalidReferenceGrant: a grant wrong in namespace, from group/kind/namespace, to group/kind/name permits nothing", async () => {
    const svc = `{group: "", kind: Service, name: web-backend}`;
    await lab.apply(
      grant(INFRA, "reference-grant-wrong-namespace", ROUTE_FROM_INFRA, svc) +
        grant(WEB, "reference-grant-wrong-from-group", `{group: not-the-group-youre-looking-for, kind: HTTPRoute, namespace: ${INFRA}}`, svc) +
        grant(WEB, "reference-grant-wrong-from-kind", `{group: gateway.networking.k8s.io, kind: Gateway, namespace: ${INFRA}}`, svc) +
        grant(WEB, "reference-grant-wrong-from-namespace", `{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: not-the-namespace-youre-looking-for}`, svc) +
        grant(WEB, "reference-grant-wrong-to-group", ROUTE_FROM_INFRA, `{group: not-the-group-youre-looking-for, kind: Service, name: web-backend}`) +
        grant(WEB, "reference-grant-wrong-to-kind", ROUTE_FROM_INFRA, `{group: "", kind: Secret, name: web-backend}`) +
        grant(WEB, "reference-grant-wrong-to-name", ROUTE_FROM_INFRA, `{group: "", kind: Service, name: not-the-service-youre-looking-for}`) +
        route(INFRA, "reference-grant", SAME, `  - backendRefs: [{name: web-backend, namespace: ${WEB}, port: 8080}]`),
    ); // prettier-ignore
    assert.equal(conds(`${INFRA}/reference-grant`), "True/Accepted False/RefNotPermitted");
    await replay([{ req: { path: "/" }, want: { status: 500 } }]);
  });

  test("HTTPRoutePartiallyInvalidViaInvalidReferenceGrant: the permitted rule serves, the other answers 500", async () => {
    await lab.apply(
      grant(
        APP,
        "invalid-reference-grant",
        ROUTE_FROM_INFRA,
        `{group: "", kind: Service, name: app-backend-v1}`,
      ) +
        route(
          INFRA,
          "invalid-reference-grant",
          SAME,
          `  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{name: app-backend-v2, namespace: ${APP}, port: 8080}]
  - backendRefs: [{name: app-backend-v1, namespace: ${APP}, port: 8080}]`,
        ),
    );
    assert.equal(conds(`${INFRA}/invalid-reference-grant`), "True/Accepted False/RefNotPermitted");
    await replay([
      { req: { path: "/v2" }, want: { status: 500 } },
      { req: { path: "/" }, want: { backend: "app-backend-v1", namespace: APP } },
    ]);
  });

  test("invalid backendRefs: unknown kind, missing Service, another namespace without a grant; rules without backendRefs", async () => {
    await lab.apply(
      route(INFRA, "invalid-backend-ref-unknown-kind", SAME, `  - matches: [{path: {type: PathPrefix, value: /v2}}]
    backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: ${V1}, port: 8080}]`) +
        route(INFRA, "invalid-nonexistent-backend-ref", SAME, `  - matches: [{path: {type: PathPrefix, value: /missing}}]
    backendRefs: [{name: nonexistent, namespace: ${INFRA}, port: 8080}]`) +
        route(INFRA, "invalid-cross-namespace-backend-ref", SAME, `  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web-backend, namespace: ${WEB}, port: 8080}]`) +
        route(INFRA, "omitted-backendrefs", SAME, `  - matches: [{path: {type: Exact, value: /omitted-no-forward}}]
  - matches: [{path: {type: Exact, value: /empty-no-forward}}]
    backendRefs: []
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: ${V1}, port: 8080}]`),
    ); // prettier-ignore
    assert.equal(conds(`${INFRA}/invalid-backend-ref-unknown-kind`), "True/Accepted False/InvalidKind");
    assert.equal(conds(`${INFRA}/invalid-nonexistent-backend-ref`), "True/Accepted False/BackendNotFound");
    assert.equal(
      conds(`${INFRA}/invalid-cross-namespace-backend-ref`),
      "True/Accepted False/RefNotPermitted",
    );
    assert.equal(conds(`${INFRA}/omitted-backendrefs`), OK);
    await replay([
      { req: { path: "/v2" }, want: { status: 500 } },
      { req: { path: "/missing" }, want: { status: 500 } },
      { req: { path: "/web" }, want: { status: 500 } },
      { req: { path: "/omitted-no-forward" }, want: { status: 500 } },
      { req: { path: "/empty-no-forward" }, want: { status: 500 } },
      { req: { path: "/forward" }, want: to(V1) },
    ]);
  });

  test("parentRefs that attach nowhere: Accepted False with the spec's reason, ResolvedRefs True, no attached route", async () => {
    const b = `  - backendRefs: [{name: ${V1}, port: 8080}]`;
    const gwOne = "gateway-with-one-not-matching-port-and-section-name-route";
    await lab.apply(
      gatewayYaml(gwOne, ["{name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}], namespaces: {from: All}}}"]) +
        gatewayYaml("tlsroutes-only", ["{name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {namespaces: {from: Same}, kinds: [{kind: TLSRoute}]}}"]) +
        route(WEB, "invalid-cross-namespace-parent-ref", `{name: same-namespace, namespace: ${INFRA}}`, `  - backendRefs: [{name: web-backend, port: 8080}]`) +
        route(INFRA, "httproute-listener-not-matching-route-port", `{name: same-namespace, namespace: ${INFRA}, port: 81}`, b) +
        route(INFRA, "httproute-listener-not-matching-section-name", `{name: same-namespace, namespace: ${INFRA}, port: 80, sectionName: http1}`, b) +
        route(INFRA, "httproute-listener-section-name-not-matching-port", `{name: ${gwOne}, namespace: ${INFRA}, sectionName: http, port: 81}`, b) +
        route(INFRA, "disallowed-kind", `{name: tlsroutes-only, namespace: ${INFRA}}`, b),
    ); // prettier-ignore
    assert.equal(conds(`${WEB}/invalid-cross-namespace-parent-ref`), "False/NotAllowedByListeners True/ResolvedRefs");
    assert.equal(conds(`${INFRA}/httproute-listener-not-matching-route-port`), "False/NoMatchingParent True/ResolvedRefs");
    assert.equal(conds(`${INFRA}/httproute-listener-not-matching-section-name`), "False/NoMatchingParent True/ResolvedRefs");
    assert.equal(conds(`${INFRA}/httproute-listener-section-name-not-matching-port`, gwOne), "False/NoMatchingParent True/ResolvedRefs");
    assert.equal(conds(`${INFRA}/disallowed-kind`, "tlsroutes-only"), "False/NotAllowedByListeners True/ResolvedRefs");
    assert.deepEqual([routesOn("same-namespace"), routesOn(gwOne), routesOn("tlsroutes-only")], [[0], [0], [0]]);
    await replay([{ req: { path: "/" }, want: { status: 404 } }]);
  }); // prettier-ignore

  test("HTTPRouteWeight: 70/30/0 over 300 requests; the weight-0 backend gets none", async () => {
    await lab.apply(
      route(
        INFRA,
        "weighted-backends",
        SAME,
        `  - backendRefs:
    - {name: ${V1}, port: 8080, weight: 70}
    - {name: ${V2}, port: 8080, weight: 30}
    - {name: ${V3}, port: 8080, weight: 0}`,
      ),
    );
    assert.equal(conds(`${INFRA}/weighted-backends`), OK);
    const answers = await lab.send(
      Array.from({ length: 300 }, (_, i) => ({ path: "/", headers: { "X-Jitter": String(i) } })),
    );
    const count: Record<string, number> = {};
    for (const a of answers) {
      const k = a.seen?.pod.replace(/-7c9f-.*/, "") ?? `status ${a.status}`;
      count[k] = (count[k] ?? 0) + 1;
    }
    assert.equal((count[V1] ?? 0) + (count[V2] ?? 0), 300, JSON.stringify(count));
    // 0.7 of 300 has a standard deviation of 7.9 requests: ±35 is 4.4 of them (the suite allows ±5%, retrying).
    assert.ok(Math.abs((count[V1] ?? 0) - 210) <= 35, JSON.stringify(count));
  });

  test("HTTPRouteHTTPSListener: routes by listener hostname behind TLS; an unknown name is 404", async () => {
    await lab.apply(
      gatewayYaml("same-namespace-with-https-listener", HTTPS_LISTENERS) +
        route(INFRA, "httproute-https-test", "{name: same-namespace-with-https-listener}", `  - backendRefs: [{name: ${V1}, port: 8080}]`, "  hostnames: [example.org]\n") +
        route(INFRA, "httproute-https-test-no-hostname", "{name: same-namespace-with-https-listener, sectionName: https-with-hostname}", `  - backendRefs: [{name: ${V2}, port: 8080}]`),
    ); // prettier-ignore
    const gw = "same-namespace-with-https-listener";
    assert.equal(conds(`${INFRA}/httproute-https-test`, gw), OK);
    assert.equal(conds(`${INFRA}/httproute-https-test-no-hostname`, gw), OK);
    const tls = (host: string) => ({ path: "/", host, tls: host });
    await replay([
      { req: tls("example.org"), want: to(V1) },
      { req: tls("unknown-example.org"), want: { status: 404 } },
      { req: tls("second-example.org"), want: to(V2) },
    ]);
  });

  test("HTTPRouteHTTPSListenerDetectMisdirectedRequests: a Host another listener than the server name's is 421", async () => {
    const gw = "same-namespace-with-https-listener";
    const r = (n: number, section: string, b: string, hosts = "") =>
      route(
        INFRA,
        `https-listener-detect-misdirected-requests-test-${n}`,
        `{name: ${gw}, sectionName: ${section}}`,
        `  - matches: [{path: {type: PathPrefix, value: /detect-misdirected-requests}}]\n    backendRefs: [{name: ${b}, port: 8080}]`,
        hosts,
      );
    await lab.apply(
      gatewayYaml(gw, HTTPS_LISTENERS) +
        r(1, "https", V1, "  hostnames: [example.org]\n") +
        r(2, "https-with-hostname", V2) +
        r(3, "https-with-wildcard-hostname", V3) +
        r(4, "https-with-hostname-matching-wildcard", V1),
    ); // prettier-ignore
    for (const n of [1, 2, 3, 4])
      assert.equal(conds(`${INFRA}/https-listener-detect-misdirected-requests-test-${n}`, gw), OK);
    const c = (sni: string, host: string, want: Case["want"]): Case => ({
      req: { path: "/detect-misdirected-requests", tls: sni, host },
      want,
    });
    const MIS = { status: 421 };
    await replay([
      c("example.org", "example.org", to(V1)),
      c("example.org", "second-example.org", MIS),
      c("example.org", "unknown-example.org", { status: 404 }),
      c("second-example.org", "second-example.org", to(V2)),
      c("second-example.org", "example.org", MIS),
      c("second-example.org", "unknown-example.org", MIS),
      c("third-example.wildcard.org", "third-example.wildcard.org", to(V3)),
      c("third-example.wildcard.org", "fith-example.wildcard.org", to(V3)),
      c("third-example.wildcard.org", "fourth-example.wildcard.org", MIS),
      c("third-example.wildcard.org", "second-example.org", MIS),
      c("third-example.wildcard.org", "unknown-example.org", MIS),
      c("fourth-example.wildcard.org", "fourth-example.wildcard.org", to(V1)),
      c("fourth-example.wildcard.org", "fith-example.wildcard.org", MIS),
      c("unknown-example.org", "example.org", to(V1)),
      c("unknown-example.org", "unknown-example.org", { status: 404 }),
    ]); // prettier-ignore
  });
});
