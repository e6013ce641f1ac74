/**
 * GRPCRoute, the pure part: parsing with field paths, method matches on the
 * call's path, the spec's precedence among GRPCRoute rules, gRPC calls
 * trying GRPCRoute rules before HTTPRoute ones, the h2c mark of a backend
 * whose Service port says so, and the statuses (Accepted, ResolvedRefs,
 * listeners that allow only HTTPRoute).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { compileGateways } from "../../src/gateway/compile.js";
import { decide, type GatewayRequest } from "../../src/gateway/match.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";
import { CLASS, compileYaml, gateway, HTTP_ALL, route } from "./fixtures.js";

function grpcRoute(name: string, body: string, created?: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ${name}, namespace: infra${created ? `, creationTimestamp: "${created}"` : ""}}
spec:
  parentRefs: [{name: gw, namespace: infra}]
${body}
`;
}

function call(path: string, headers: Record<string, string> = {}, grpc = true): GatewayRequest {
  return {
    method: "POST",
    target: path,
    host: "example.com",
    headers: [
      { name: "content-type", value: grpc ? "application/grpc" : "text/plain" },
      ...Object.entries(headers).map(([name, value]) => ({ name, value })),
    ],
    grpc,
  };
}

/** Which backend Service takes the call (or what else happens). */
function where(text: string, r: GatewayRequest): string {
  const port = compileYaml(text).table.ports[0];
  assert.ok(port, "a served port");
  const d = decide(port, r, () => 0);
  return d.kind === "forward" ? d.backend.name : d.kind;
}

const ROUTES =
  CLASS +
  gateway(HTTP_ALL) +
  grpcRoute(
    "a",
    `  rules:
  - matches: [{method: {service: pkg.Echo, method: Say}}]
    backendRefs: [{name: v1, port: 9090}]
  - matches: [{method: {service: pkg.Echo}}]
    backendRefs: [{name: v2, port: 9090}]
  - matches: [{method: {method: Say}}]
    backendRefs: [{name: v3, port: 9090}]
  - matches: [{method: {type: RegularExpression, service: "pkg\\\\.Rx.*", method: "Get.*"}}]
    backendRefs: [{name: v1, port: 9090}]
  - matches: [{method: {service: pkg.Hdr}, headers: [{name: x-pick, value: three}]}]
    backendRefs: [{name: v3, port: 9090}]
  - matches: [{method: {service: pkg.Hdr}}]
    backendRefs: [{name: v1, port: 9090}]`,
  );

describe("GRPCRoute matching and precedence", () => {
  const cases: [string, GatewayRequest, string][] = [
    ["service and method exact beat service only", call("/pkg.Echo/Say"), "v1"],
    ["service only takes the service's other methods", call("/pkg.Echo/Other"), "v2"],
    ["method only takes that method of any service", call("/pkg.Else/Say"), "v3"],
    ["a regular expression on service and method", call("/pkg.RxFoo/GetBar"), "v1"],
    ["a regular expression matches whole names only", call("/pkg.RxFoo/Put"), "not-found"],
    ["more header matches win among equal methods", call("/pkg.Hdr/M", { "x-pick": "three" }), "v3"],
    ["without the header, the other rule", call("/pkg.Hdr/M"), "v1"],
    ["no rule: not found (gRPC UNIMPLEMENTED at the server)", call("/pkg.None/X"), "not-found"],
    [
      "a request that is not gRPC never takes a GRPCRoute rule",
      call("/pkg.Echo/Say", {}, false),
      "not-found",
    ],
  ];
  for (const [name, r, want] of cases) test(name, () => assert.equal(where(ROUTES, r), want));

  test("a longer service beats an older route; among equals the older route wins", () => {
    const text =
      CLASS +
      gateway(HTTP_ALL) +
      grpcRoute("old", `  rules: [{matches: [{method: {service: a.B}}], backendRefs: [{name: v1, port: 1}]}]`, "2020-01-01T00:00:00Z") +
      grpcRoute("new", `  rules: [{matches: [{method: {service: a.Bc}}], backendRefs: [{name: v2, port: 1}]}]`, "2024-01-01T00:00:00Z") +
      grpcRoute("newer", `  rules: [{matches: [{method: {service: a.B}}], backendRefs: [{name: v3, port: 1}]}]`, "2025-01-01T00:00:00Z"); // prettier-ignore
    assert.equal(where(text, call("/a.Bc/M")), "v2");
    assert.equal(where(text, call("/a.B/M")), "v1");
  });

  test("a gRPC call no GRPCRoute rule takes falls to the HTTPRoute rules", () => {
    const text =
      CLASS +
      gateway(HTTP_ALL) +
      grpcRoute("g", `  rules: [{matches: [{method: {service: a.B}}], backendRefs: [{name: v1, port: 1}]}]`) +
      route("h", `  rules: [{backendRefs: [{name: v2, port: 1}]}]`);
    assert.equal(where(text, call("/a.B/M")), "v1");
    assert.equal(where(text, call("/x.Y/M")), "v2");
  });

  test("a Service port with appProtocol kubernetes.io/h2c or grpc makes the backend h2c; targetPort is used", () => {
    const text = CLASS + gateway(HTTP_ALL) + grpcRoute("g", `  rules: [{backendRefs: [{name: v1, port: 9090}, {name: v2, port: 9090}]}]`); // prettier-ignore
    const t = compileGateways({
      resources: parseGatewayResources(text, "t.yaml"),
      hasService: () => true,
      namespaceLabels: () => ({}),
      certificateProblem: () => undefined,
      servicePort: (_ns, name, port) =>
        name === "v1" && port === 9090 ? { appProtocol: "kubernetes.io/h2c", targetPort: 9443 } : undefined,
      addresses: ["10.0.0.1"],
      now: "now",
    }).table;
    const rule = t.ports[0]?.listeners[0]?.vhosts[0]?.grpcRules?.[0];
    assert.deepEqual(
      rule?.backends.map((b) => [b.name, b.h2c ?? false, b.port]),
      [
        ["v1", true, 9443],
        ["v2", false, 9090],
      ],
    );
  });
});

describe("a backendRef to a WebSocket Service port (appProtocol kubernetes.io/ws, wss: not supported)", () => {
  test("ResolvedRefs False UnsupportedProtocol naming the port and its appProtocol; a request to it is 500", () => {
    const text =
      CLASS + gateway(HTTP_ALL) + route("ws", `  rules: [{backendRefs: [{name: ws, port: 8080}]}]`);
    const c = compileGateways({
      resources: parseGatewayResources(text, "t.yaml"),
      hasService: () => true,
      namespaceLabels: () => ({}),
      certificateProblem: () => undefined,
      servicePort: () => ({ appProtocol: "kubernetes.io/ws" }),
      addresses: ["10.0.0.1"],
      now: "now",
    });
    const rr = c.status.routes
      .get("HTTPRoute/infra/ws")
      ?.parents[0]?.conditions.find((x) => x.type === "ResolvedRefs");
    assert.equal(`${rr?.status}/${rr?.reason}`, "False/UnsupportedProtocol");
    assert.match(rr?.message ?? "", /Service infra\/ws port 8080: appProtocol kubernetes\.io\/ws/);
    const port = c.table.ports[0];
    assert.ok(port);
    const d = decide(port, call("/x", {}, false), () => 0);
    assert.equal(d.kind === "error" ? d.status : d.kind, 500);
  });
});

describe("GRPCRoute status", () => {
  const status = (text: string, type: string): string => {
    const c = compileYaml(text)
      .status.routes.get("GRPCRoute/infra/g")
      ?.parents[0]?.conditions.find((x) => x.type === type);
    return c ? `${c.status}/${c.reason}` : "absent";
  };
  test("accepted on an HTTP listener (both route kinds supported), refs resolved", () => {
    const text =
      CLASS + gateway(HTTP_ALL) + grpcRoute("g", `  rules: [{backendRefs: [{name: v1, port: 9090}]}]`);
    assert.equal(status(text, "Accepted"), "True/Accepted");
    assert.equal(status(text, "ResolvedRefs"), "True/ResolvedRefs");
    const kinds = compileYaml(text).status.gateways.get("Gateway/infra/gw")?.listeners[0]?.supportedKinds;
    assert.deepEqual(
      kinds?.map((k) => k.kind),
      ["HTTPRoute", "GRPCRoute"],
    );
  });
  test("a missing Service: ResolvedRefs False BackendNotFound, and the call is an error (UNAVAILABLE)", () => {
    const text =
      CLASS + gateway(HTTP_ALL) + grpcRoute("g", `  rules: [{backendRefs: [{name: gone, port: 9090}]}]`);
    assert.equal(status(text, "ResolvedRefs"), "False/BackendNotFound");
    assert.equal(where(text, call("/a.B/C")), "error");
  });
  test("a listener that allows only HTTPRoute refuses it: NotAllowedByListeners", () => {
    const only = `  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}, kinds: [{kind: HTTPRoute}]}}`;
    const text = CLASS + gateway(only) + grpcRoute("g", `  rules: [{backendRefs: [{name: v1, port: 9090}]}]`);
    assert.equal(status(text, "Accepted"), "False/NotAllowedByListeners");
  });
});

describe("GRPCRoute parsing", () => {
  const bad: [string, string, RegExp][] = [
    ["an Exact match naming neither", `[{matches: [{method: {type: Exact}}]}]`, /rules\[0\]\.matches\[0\]\.method: an Exact method match names/],
    ["a service that is not a name", `[{matches: [{method: {service: "a/b"}}]}]`, /matches\[0\]\.method\.service: "a\/b" is not a gRPC service name/],
    ["a method that is not a name", `[{matches: [{method: {service: a.B, method: "x.y"}}]}]`, /method\.method: "x\.y" is not a gRPC method name/],
    ["a regular expression RE2 refuses", `[{matches: [{method: {type: RegularExpression, service: "(?=x)"}}]}]`, /method\.service: is not an RE2 regular expression/],
    ["a filter GRPCRoute does not have", `[{filters: [{type: URLRewrite, urlRewrite: {hostname: a.com}}]}]`, /rules\[0\]\.filters\[0\]\.type: must be one of RequestHeaderModifier, ResponseHeaderModifier, RequestMirror/],
    ["an unknown field in a match", `[{matches: [{path: {value: /x}}]}]`, /rules\[0\]\.matches\[0\]\.path: unknown field/],
    ["a backendRef without its port", `[{backendRefs: [{name: v1}]}]`, /rules\[0\]\.backendRefs\[0\]\.port: is required/],
    ["a backendRef's RequestRedirect (HTTPRoute's alone)", `[{backendRefs: [{name: v1, port: 80, filters: [{type: RequestRedirect, requestRedirect: {scheme: https}}]}]}]`, /backendRefs\[0\]\.filters\[0\]\.type: RequestRedirect is not supported on a backendRef \(RequestHeaderModifier, ResponseHeaderModifier are\)/],
  ]; // prettier-ignore
  for (const [name, rules, want] of bad)
    test(`refused with the field named: ${name}`, () => {
      const text = CLASS + gateway(HTTP_ALL) + grpcRoute("g", `  rules: ${rules}`);
      assert.throws(
        () => parseGatewayResources(text, "g.yaml"),
        (e: unknown) => e instanceof MembraneError && e.code === "GATEWAY_INVALID" && want.test(e.message),
      );
    });
});
