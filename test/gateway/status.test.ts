/**
 * Status conditions and input checks of the pure part, table-style, with the
 * reasons the Gateway API names: listener Accepted/ResolvedRefs/Programmed/
 * Conflicted, route Accepted (NotAllowedByListeners, NoMatchingParent,
 * NoMatchingListenerHostname) and ResolvedRefs (RefNotPermitted,
 * BackendNotFound, InvalidKind), ReferenceGrant, Ingress translation, and
 * parse errors that name the field.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { decide } from "../../src/gateway/match.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import type { Condition } from "../../src/gateway/status.js";
import { CLASS, compileYaml, gateway, HTTP_ALL, req, route } from "./fixtures.js";

const cond = (cs: readonly Condition[] | undefined, type: string): string => {
  const c = cs?.find((x) => x.type === type);
  return c ? `${c.status}/${c.reason}` : "absent";
};

function routeCond(
  text: string,
  key: string,
  type: string,
  o: Parameters<typeof compileYaml>[1] = {},
): string {
  return cond(compileYaml(text, o).status.routes.get(key)?.parents[0]?.conditions, type);
}

describe("gateway status: routes", () => {
  const cases: [string, string, string, string][] = [
    [
      "a route in the Gateway's namespace on a listener that allows Same",
      gateway(`  - {name: http, port: 80, protocol: HTTP}`) +
        route("r", `  rules: [{backendRefs: [{name: v1, port: 8080}]}]`),
      "Accepted",
      "True/Accepted",
    ],
    [
      "a route from another namespace where the listener allows Same",
      gateway(`  - {name: http, port: 80, protocol: HTTP}`) +
        route("r", `  rules: [{backendRefs: [{name: web, port: 8080}]}]`, "app"),
      "Accepted",
      "False/NotAllowedByListeners",
    ],
    [
      "a route from a namespace the listener's selector picks",
      gateway(
        `  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {team: a}}}}}`,
      ) + route("r", `  rules: [{backendRefs: [{name: web, port: 8080}]}]`, "app"),
      "Accepted",
      "True/Accepted",
    ],
    [
      "a sectionName no listener has",
      gateway(HTTP_ALL) +
        route("r", `  rules: [{backendRefs: [{name: v1, port: 8080}]}]`).replace(
          "[{name: gw, namespace: infra}]",
          "[{name: gw, namespace: infra, sectionName: nope}]",
        ),
      "Accepted",
      "False/NoMatchingParent",
    ],
    [
      "a backendRef to another namespace without a ReferenceGrant",
      gateway(HTTP_ALL) + route("r", `  rules: [{backendRefs: [{name: web, namespace: app, port: 8080}]}]`),
      "ResolvedRefs",
      "False/RefNotPermitted",
    ],
    [
      "a backendRef of a kind that is not a Service",
      gateway(HTTP_ALL) +
        route("r", `  rules: [{backendRefs: [{group: example.com, kind: Bucket, name: b, port: 8080}]}]`),
      "ResolvedRefs",
      "False/InvalidKind",
    ],
    [
      "a backendRef to a Service that does not exist",
      gateway(HTTP_ALL) + route("r", `  rules: [{backendRefs: [{name: nothere, port: 8080}]}]`),
      "ResolvedRefs",
      "False/BackendNotFound",
    ],
  ];
  for (const [name, text, type, want] of cases)
    test(`${name}: ${type} ${want}`, () =>
      assert.equal(
        routeCond(CLASS + text, `HTTPRoute/${text.includes("namespace: app}") ? "app" : "infra"}/r`, type, {
          nsLabels: { app: { team: "a" } },
        }),
        want,
      ));

  test("a ReferenceGrant in the Service's namespace permits the cross-namespace backendRef", () => {
    const grant = `---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: let-infra, namespace: app}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: infra}]
  to: [{group: "", kind: Service, name: web}]
`;
    const text =
      CLASS +
      gateway(HTTP_ALL) +
      route("r", `  rules: [{backendRefs: [{name: web, namespace: app, port: 8080}]}]`);
    assert.equal(routeCond(text + grant, "HTTPRoute/infra/r", "ResolvedRefs"), "True/ResolvedRefs");
    const c = compileYaml(text + grant);
    const p = c.table.ports[0];
    assert.ok(p);
    const d = decide(p, req("/"));
    assert.equal(d.kind === "forward" ? `${d.backend.namespace}/${d.backend.name}` : d.kind, "app/web");
    const wrongName = grant.replace("name: web}", "name: other}");
    assert.equal(routeCond(text + wrongName, "HTTPRoute/infra/r", "ResolvedRefs"), "False/RefNotPermitted");
  });

  test("a route of a Gateway whose class is another controller's gets no status from us", () => {
    const other = CLASS.replace("membrane.io/gateway-controller", "example.net/other");
    const c = compileYaml(
      other + gateway(HTTP_ALL) + route("r", `  rules: [{backendRefs: [{name: v1, port: 8080}]}]`),
    );
    assert.equal(c.status.routes.size, 0);
    assert.equal(c.status.gateways.size, 0);
    assert.equal(c.table.ports.length, 0);
  });
});

describe("gateway status: listeners", () => {
  const listeners = `  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: again, port: 80, protocol: HTTP}
  - {name: tcp, port: 90, protocol: TCP}
  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: good}]}}
  - {name: nocert, port: 444, protocol: HTTPS, tls: {certificateRefs: [{name: missing}]}}
  - {name: elsewhere, port: 445, protocol: HTTPS, tls: {certificateRefs: [{name: good, namespace: other}]}}
  - {name: kinds, port: 8080, protocol: HTTP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}`;
  const c = compileYaml(
    CLASS + gateway(listeners) + route("r", `  rules: [{backendRefs: [{name: v1, port: 8080}]}]`),
    {
      certProblem: (ns, name) => (name === "good" ? undefined : `Secret ${ns}/${name}: tls.crt is missing`),
    },
  );
  const st = c.status.gateways.get("Gateway/infra/gw");
  const l = (name: string) => st?.listeners.find((x) => x.name === name);
  const cases: [string, string, string][] = [
    ["http", "Programmed", "True/Programmed"],
    ["again", "Conflicted", "True/HostnameConflict"],
    ["again", "Programmed", "False/Invalid"],
    ["tcp", "Accepted", "False/UnsupportedProtocol"],
    ["https", "ResolvedRefs", "True/ResolvedRefs"],
    ["nocert", "ResolvedRefs", "False/InvalidCertificateRef"],
    ["nocert", "Programmed", "False/Invalid"],
    ["elsewhere", "ResolvedRefs", "False/RefNotPermitted"],
    ["kinds", "ResolvedRefs", "False/InvalidRouteKinds"],
  ];
  for (const [name, type, want] of cases)
    test(`listener ${name}: ${type} ${want}`, () => assert.equal(cond(l(name)?.conditions, type), want));

  test("the Gateway is Accepted and Programmed with its address; attachedRoutes counts the route", () => {
    assert.equal(cond(st?.conditions, "Accepted"), "True/Accepted");
    assert.equal(cond(st?.conditions, "Programmed"), "True/Programmed");
    assert.deepEqual(st?.addresses, [{ type: "IPAddress", value: "10.0.0.1" }]);
    assert.equal(l("http")?.attachedRoutes, 1);
    assert.deepEqual(c.table.ports.map((p) => `${p.protocol}:${p.port}`).sort(), ["HTTP:80", "HTTPS:443"]);
  });

  test("an address the node does not serve leaves the Gateway not programmed (AddressNotUsable)", () => {
    const s = compileYaml(
      CLASS + gateway(HTTP_ALL, "  addresses: [{type: IPAddress, value: 203.0.113.9}]"),
    ).status.gateways.get("Gateway/infra/gw");
    assert.equal(cond(s?.conditions, "Programmed"), "False/AddressNotUsable");
  });
});

describe("gateway input: Ingress and bad documents", () => {
  test("an Ingress: host rules, Exact and Prefix paths, a default backend for other paths and hosts", () => {
    const c = compileYaml(
      `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop, namespace: app}
spec:
  ingressClassName: membrane
  defaultBackend: {service: {name: web, port: {number: 80}}}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /cart, pathType: Exact, backend: {service: {name: cart, port: {number: 8080}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: api, port: {number: 8080}}}}
`,
      { services: ["app/web", "app/cart", "app/api"] },
    );
    const p = c.table.ports.find((x) => x.port === 80);
    assert.ok(p);
    const to = (path: string, host: string): string => {
      const d = decide(p, req(path, host));
      return d.kind === "forward" ? d.backend.name : d.kind;
    };
    assert.equal(to("/cart", "shop.example.com"), "cart");
    assert.equal(to("/cart/x", "shop.example.com"), "web");
    assert.equal(to("/api/v1", "shop.example.com"), "api");
    assert.equal(to("/other", "else.example.com"), "web");
    assert.deepEqual(c.status.ingresses.get("Ingress/app/shop"), {
      loadBalancer: { ingress: [{ ip: "10.0.0.1" }] },
    });
  });

  const bad: [string, string, RegExp][] = [
    [
      "an unknown field",
      route("r", "  rules: [{backendRefs: [{name: v1, port: 8080}], retries: 3}]"),
      /spec\.rules\[0\]\.retries: unknown field/,
    ],
    [
      "a bad path type",
      route("r", "  rules: [{matches: [{path: {type: Glob, value: /x}}]}]"),
      /spec\.rules\[0\]\.matches\[0\]\.path\.type: must be one of Exact, PathPrefix, RegularExpression/,
    ],
    [
      "an invalid regular expression",
      route("r", '  rules: [{matches: [{path: {type: RegularExpression, value: "/(x"}}]}]'),
      /path\.value: is not an RE2 regular expression/,
    ],
    [
      "a Service backendRef without a port",
      route("r", "  rules: [{backendRefs: [{name: v1}]}]"),
      /backendRefs\[0\]\.port: is required for a Service/,
    ],
    [
      "a redirect with backendRefs",
      route(
        "r",
        "  rules: [{filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}], backendRefs: [{name: v1, port: 80}]}]",
      ),
      /backendRefs: must be empty with a RequestRedirect/,
    ],
    [
      "ReplacePrefixMatch on an Exact match",
      route(
        "r",
        "  rules: [{matches: [{path: {type: Exact, value: /a}}], filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}], backendRefs: [{name: v1, port: 80}]}]",
      ),
      /ReplacePrefixMatch needs every match/,
    ],
    [
      "a backendRef's RequestRedirect and URLRewrite together",
      route(
        "r",
        "  rules: [{backendRefs: [{name: v1, port: 80, filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}, {type: URLRewrite, urlRewrite: {hostname: x.example}}]}]}]",
      ),
      /backendRefs\[0\]\.filters: RequestRedirect and URLRewrite cannot be used together/,
    ],
    [
      "a backendRef's ReplacePrefixMatch on an Exact match",
      route(
        "r",
        "  rules: [{matches: [{path: {type: Exact, value: /a}}], backendRefs: [{name: v1, port: 80, filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /b}}}]}]}]",
      ),
      /backendRefs\[0\]\.filters: ReplacePrefixMatch needs every match/,
    ],
    [
      "a redirect status code the spec does not allow",
      route("r", "  rules: [{filters: [{type: RequestRedirect, requestRedirect: {statusCode: 300}}]}]"),
      /statusCode: must be 301, 302, 303, 307 or 308/,
    ],
    [
      "a header value with CR LF",
      route(
        "r",
        '  rules: [{filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x, value: "a\\r\\nInjected: 1"}]}}], backendRefs: [{name: v1, port: 80}]}]',
      ),
      /value: must not contain CR, LF or NUL/,
    ],
    [
      "a rewrite path with CR LF (it would split the request to the backend)",
      route(
        "r",
        '  rules: [{filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: "/a HTTP/1.1\\r\\nX: y"}}}], backendRefs: [{name: v1, port: 80}]}]',
      ),
      /replaceFullPath: must not contain spaces, control characters or #/,
    ],
    [
      "an upper-case hostname",
      route("r", '  hostnames: ["Example.com"]'),
      /spec\.hostnames\[0\]: must be lower case/,
    ],
  ];
  for (const [name, text, want] of bad)
    test(`refused whole, naming the field: ${name}`, () => {
      assert.throws(
        () => parseGatewayResources(CLASS + text, "bad.yaml"),
        (e: unknown) =>
          e instanceof MembraneError &&
          e.code === "GATEWAY_INVALID" &&
          want.test(e.message) &&
          e.message.includes("bad.yaml document 2"),
      );
    });
});
