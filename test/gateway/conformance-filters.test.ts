/**
 * Gateway API conformance, replayed (root): the suite's HTTPRoute filter
 * cases through the real gateway process to echo pods. RequestRedirect
 * (status 301/302/303/307/308, hostname, path ReplaceFullPath and
 * ReplacePrefixMatch, port, scheme, and the port shown or left out as the
 * scheme and listener say, on HTTP 80, HTTP 8080 and HTTPS 443 listeners),
 * URLRewrite (hostname, path), RequestHeaderModifier and
 * ResponseHeaderModifier (set, add, remove, names in any case), RequestMirror
 * to one and to two backends, and a backendRef's own filters (header
 * modifiers, RequestRedirect, URLRewrite). The cases are written here in our
 * words from the suite's contract.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { until } from "../support/until.js";
import { ConformanceLab, gatewayYaml, INFRA } from "./conformance-lab.js";
import { cond, judge, to, type Case } from "./conformance-check.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const V1 = "infra-backend-v1";
const V2 = "infra-backend-v2";

function route(name: string, rules: string[], parent = "same-namespace", hostnames = ""): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
  parentRefs: [{name: ${parent}}]
${hostnames}  rules:
${rules.join("\n")}
`;
}

/** A rule: a PathPrefix match, filters (flow YAML each), backendRefs. */
function rule(prefix: string | undefined, filters: string[], backends: string[] = []): string {
  const m = prefix === undefined ? "" : `    matches: [{path: {type: PathPrefix, value: ${prefix}}}]\n`;
  return `  - ${m.trimStart()}${m === "" ? "" : "    "}filters: [${filters.join(", ")}]
    backendRefs: [${backends.map((b) => `{name: ${b}, port: 8080}`).join(", ")}]`;
}

const redirect = (fields: string) => `{type: RequestRedirect, requestRedirect: {${fields}}}`;
const rewrite = (fields: string) => `{type: URLRewrite, urlRewrite: {${fields}}}`;
const reqMod = (fields: string) => `{type: RequestHeaderModifier, requestHeaderModifier: {${fields}}}`;
const resMod = (fields: string) => `{type: ResponseHeaderModifier, responseHeaderModifier: {${fields}}}`;
const mirror = (b: string) => `{type: RequestMirror, requestMirror: {backendRef: {name: ${b}, port: 8080}}}`;
const pairs = (ps: [string, string][]) => `[${ps.map(([n, v]) => `{name: ${n}, value: ${v}}`).join(", ")}]`;

/** The suite's "set, add twice, remove" modifier and what the backend then sees. */
const MOD = `set: ${pairs([["X-Header-Set", "set-overwrites-values"]])}, add: ${pairs([
  ["X-Header-Add", "header-val-1"],
  ["X-Header-Add-Append", "header-val-2"],
])}, remove: [X-Header-Remove]`;
const MOD_SENT = { "X-Header-Remove": "remove-val", "X-Header-Add-Append": "append-val-1" };
const MOD_SEEN = {
  headers: {
    "X-Header-Add": "header-val-1",
    "X-Header-Add-Append": "append-val-1,header-val-2",
    "X-Header-Set": "set-overwrites-values",
  },
  absent: ["X-Header-Remove"],
};

describe("Gateway API conformance: filters (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
    lab.certificate(INFRA, "tls-validity-checks-certificate", ["example.org", "*.example.org"]);
  });
  after(async () => {
    await lab?.destroy();
  });

  const replay = async (cases: Case[]): Promise<void> =>
    judge(cases, await lab.send(cases.map((c) => c.req)));
  const accepted = (name: string, gw = "same-namespace"): void => {
    const cs = lab.routeConditions(`${INFRA}/${name}`, gw);
    assert.equal(
      `${cond(cs, "Accepted")} ${cond(cs, "ResolvedRefs")}`,
      "True/Accepted True/ResolvedRefs",
      name,
    );
  };

  test("HTTPRoute303/307/308Redirect, RedirectHostAndStatus, RedirectPath, RedirectPort, RedirectScheme", async () => {
    await lab.apply(
      route("redirects", [
        rule("/see-other", [redirect("statusCode: 303")]),
        rule("/temporary", [redirect("statusCode: 307")]),
        rule("/permanent", [redirect("statusCode: 308")]),
        rule("/hostname-redirect", [redirect("hostname: example.org")]),
        rule("/host-and-status", [redirect("statusCode: 301, hostname: example.org")]),
        rule("/original-prefix", [redirect("path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}")]),
        rule("/full", [redirect("path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}")]),
        rule("/path-and-host", [redirect("hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}")]),
        rule("/path-and-status", [redirect("statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}")]),
        rule("/full-path-and-host", [redirect("hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}")]),
        rule("/full-path-and-status", [redirect("statusCode: 301, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}")]),
        rule("/port", [redirect("port: 8083")]),
        rule("/port-and-host", [redirect("hostname: example.org, port: 8083")]),
        rule("/port-and-status", [redirect("port: 8083, statusCode: 301")]),
        rule("/port-and-host-and-status", [redirect("port: 8083, hostname: example.org, statusCode: 302")]),
        rule("/scheme", [redirect("scheme: https")]),
        rule("/scheme-and-host", [redirect("hostname: example.org, scheme: https")]),
        rule("/scheme-and-status", [redirect("scheme: https, statusCode: 301")]),
        rule("/scheme-and-host-and-status", [redirect("scheme: https, statusCode: 302, hostname: example.org")]),
      ]), // prettier-ignore
    );
    accepted("redirects");
    const go = (
      path: string,
      status: number,
      redirect: Case["want"]["redirect"] = {},
      method?: string,
    ): Case => ({
      req: { path, ...(method ? { method } : {}) },
      want: { status, redirect },
    });
    const ORG = "example.org";
    await replay([
      go("/see-other", 303, {}, "POST"),
      go("/temporary", 307),
      go("/permanent", 308),
      go("/hostname-redirect", 302, { host: ORG }),
      go("/host-and-status", 301, { host: ORG }),
      go("/original-prefix/lemon", 302, { path: "/replacement-prefix/lemon" }),
      go("/full/path/original", 302, { path: "/full-path-replacement" }),
      go("/path-and-host", 302, { host: ORG, path: "/replacement-prefix" }),
      go("/path-and-status", 301, { path: "/replacement-prefix" }),
      go("/full-path-and-host", 302, { host: ORG, path: "/replacement-full" }),
      go("/full-path-and-status", 301, { path: "/replacement-full" }),
      go("/port", 302, { port: "8083" }),
      go("/port-and-host", 302, { host: ORG, port: "8083" }),
      go("/port-and-status", 301, { port: "8083" }),
      go("/port-and-host-and-status", 302, { host: ORG, port: "8083" }),
      go("/scheme", 302, { scheme: "https" }),
      go("/scheme-and-host", 302, { host: ORG, scheme: "https" }),
      go("/scheme-and-status", 301, { scheme: "https" }),
      go("/scheme-and-host-and-status", 302, { host: ORG, scheme: "https" }),
    ]);
  });

  test("HTTPRouteRedirectPortAndScheme: the port shown only when it is not the scheme's default", async () => {
    const h = "hostname: example.org";
    const gw8080 = "same-namespace-with-http-listener-on-8080";
    const gwTls = "same-namespace-with-https-listener";
    await lab.apply(
      gatewayYaml(gw8080, ["{name: http, port: 8080, protocol: HTTP}"]) +
        gatewayYaml(gwTls, ["{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: tls-validity-checks-certificate}]}}"]) +
        route("http-route-for-listener-on-port-80", [
          rule("/scheme-nil-and-port-nil", [redirect(h)]),
          rule("/scheme-nil-and-port-80", [redirect(`port: 80, ${h}`)]),
          rule("/scheme-nil-and-port-8080", [redirect(`port: 8080, ${h}`)]),
          rule("/scheme-https-and-port-nil", [redirect(`scheme: https, ${h}`)]),
          rule("/scheme-https-and-port-443", [redirect(`scheme: https, port: 443, ${h}`)]),
          rule("/scheme-https-and-port-8443", [redirect(`scheme: https, port: 8443, ${h}`)]),
        ]) +
        route("http-route-for-listener-on-port-8080", [
          rule("/scheme-nil-and-port-nil", [redirect(h)]),
          rule("/scheme-nil-and-port-80", [redirect(`port: 80, ${h}`)]),
          rule("/scheme-https-and-port-nil", [redirect(`scheme: https, ${h}`)]),
        ], gw8080) +
        route("http-route-for-listener-on-port-443", [
          rule("/scheme-nil-and-port-nil", [redirect(h)]),
          rule("/scheme-nil-and-port-443", [redirect(`port: 443, ${h}`)]),
          rule("/scheme-nil-and-port-8443", [redirect(`port: 8443, ${h}`)]),
          rule("/scheme-http-and-port-nil", [redirect(`scheme: http, ${h}`)]),
          rule("/scheme-http-and-port-80", [redirect(`scheme: http, port: 80, ${h}`)]),
          rule("/scheme-http-and-port-8080", [redirect(`scheme: http, port: 8080, ${h}`)]),
        ], gwTls, "  hostnames: [example.org]\n"), // prettier-ignore
    );
    accepted("http-route-for-listener-on-port-80");
    accepted("http-route-for-listener-on-port-8080", gw8080);
    accepted("http-route-for-listener-on-port-443", gwTls);
    const ORG = "example.org";
    const on = (port: number, path: string, scheme: string, rport?: string): Case => ({
      req: { path, port, ...(port === 443 ? { tls: ORG, host: ORG } : {}) },
      want: { status: 302, redirect: { scheme, host: ORG, ...(rport ? { port: rport } : {}) } },
    });
    await replay([
      on(80, "/scheme-nil-and-port-nil", "http"),
      on(80, "/scheme-nil-and-port-80", "http"),
      on(80, "/scheme-nil-and-port-8080", "http", "8080"),
      on(80, "/scheme-https-and-port-nil", "https"),
      on(80, "/scheme-https-and-port-443", "https"),
      on(80, "/scheme-https-and-port-8443", "https", "8443"),
      on(8080, "/scheme-nil-and-port-nil", "http", "8080"),
      on(8080, "/scheme-nil-and-port-80", "http"),
      on(8080, "/scheme-https-and-port-nil", "https"),
      on(443, "/scheme-nil-and-port-nil", "https"),
      on(443, "/scheme-nil-and-port-443", "https"),
      on(443, "/scheme-nil-and-port-8443", "https", "8443"),
      on(443, "/scheme-http-and-port-nil", "http"),
      on(443, "/scheme-http-and-port-80", "http"),
      on(443, "/scheme-http-and-port-8080", "http", "8080"),
    ]);
  });

  test("HTTPRouteRewriteHost and HTTPRouteRewritePath: what the backend sees", async () => {
    await lab.apply(
      route("rewrite-host", [
        rule("/one", [rewrite("hostname: one.example.org")], [V1]),
        rule(undefined, [rewrite("hostname: example.org")], [V2]),
        rule("/rewrite-host-and-modify-headers", [rewrite("hostname: test.example.org"), reqMod(MOD)], [V2]),
      ], "same-namespace", "  hostnames: [rewrite.example]\n") +
        route("rewrite-path", [
          rule("/prefix/one", [rewrite("path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}")], [V1]),
          rule("/strip-prefix", [rewrite("path: {type: ReplacePrefixMatch, replacePrefixMatch: /}")], [V1]),
          rule("/full/one", [rewrite("path: {type: ReplaceFullPath, replaceFullPath: /one}")], [V1]),
          rule("/full/rewrite-path-and-modify-headers", [rewrite("path: {type: ReplaceFullPath, replaceFullPath: /test}"), reqMod(MOD)], [V1]),
          rule("/prefix/rewrite-path-and-modify-headers", [rewrite("path: {type: ReplacePrefixMatch, replacePrefixMatch: /prefix}"), reqMod(MOD)], [V1]),
        ]), // prettier-ignore
    );
    accepted("rewrite-host");
    accepted("rewrite-path");
    const RW = "rewrite.example";
    const sent = { ...MOD_SENT, "X-Header-Set": "set-val" };
    await replay([
      { req: { host: RW, path: "/one" }, want: to(V1, { host: "one.example.org" }) },
      { req: { host: RW, path: "/two" }, want: to(V2, { host: "example.org" }) },
      {
        req: { host: RW, path: "/rewrite-host-and-modify-headers", headers: MOD_SENT },
        want: to(V2, { host: "test.example.org", ...MOD_SEEN }),
      },
      { req: { path: "/prefix/one/two" }, want: to(V1, { path: "/one/two" }) },
      { req: { path: "/strip-prefix/three" }, want: to(V1, { path: "/three" }) },
      { req: { path: "/strip-prefix" }, want: to(V1, { path: "/" }) },
      { req: { path: "/full/one/two" }, want: to(V1, { path: "/one" }) },
      {
        req: { path: "/full/rewrite-path-and-modify-headers/test", headers: sent },
        want: to(V1, { path: "/test", ...MOD_SEEN }),
      },
      {
        req: { path: "/prefix/rewrite-path-and-modify-headers/one", headers: sent },
        want: to(V1, { path: "/prefix/one", ...MOD_SEEN }),
      },
    ]);
  });

  test("HTTPRouteRequestHeaderModifier: set, add, remove, several at once, names in any case", async () => {
    await lab.apply(
      route("request-header-modifier", [
        rule("/set", [reqMod(`set: ${pairs([["X-Header-Set", "set-overwrites-values"]])}`)], [V1]),
        rule("/add", [reqMod(`add: ${pairs([["X-Header-Add", "add-appends-values"]])}`)], [V1]),
        rule("/remove", [reqMod("remove: [X-Header-Remove]")], [V1]),
        rule("/multiple", [reqMod(`set: ${pairs([["X-Header-Set-1", "header-set-1"], ["X-Header-Set-2", "header-set-2"]])}, add: ${pairs([["X-Header-Add-1", "header-add-1"], ["X-Header-Add-2", "header-add-2"], ["X-Header-Add-3", "header-add-3"]])}, remove: [X-Header-Remove-1, X-Header-Remove-2]`)], [V1]),
        rule("/case-insensitivity", [reqMod(`set: ${pairs([["X-Header-Set", "header-set"]])}, add: ${pairs([["X-Header-Add", "header-add"]])}, remove: [X-Header-Remove]`)], [V1]),
      ]), // prettier-ignore
    );
    accepted("request-header-modifier");
    const o = "Some-Other-Header";
    await replay([
      { req: { path: "/set", headers: { [o]: "val" } }, want: to(V1, { headers: { [o]: "val", "X-Header-Set": "set-overwrites-values" } }) },
      { req: { path: "/set", headers: { [o]: "val", "X-Header-Set": "some-other-value" } }, want: to(V1, { headers: { [o]: "val", "X-Header-Set": "set-overwrites-values" } }) },
      { req: { path: "/add", headers: { [o]: "val" } }, want: to(V1, { headers: { [o]: "val", "X-Header-Add": "add-appends-values" } }) },
      { req: { path: "/add", headers: { [o]: "val", "X-Header-Add": "some-other-value" } }, want: to(V1, { headers: { [o]: "val", "X-Header-Add": "some-other-value,add-appends-values" } }) },
      { req: { path: "/remove", headers: { "X-Header-Remove": "val" } }, want: to(V1, { absent: ["X-Header-Remove"] }) },
      {
        req: { path: "/multiple", headers: { "X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val" } },
        want: to(V1, { headers: { "X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2", "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val" }, absent: ["X-Header-Remove-1", "X-Header-Remove-2"] }),
      },
      {
        req: { path: "/case-insensitivity", headers: { "x-header-set": "original-val-set", "x-header-add": "original-val-add", "x-header-remove": "original-val-remove", "Another-Header": "another-header-val" } },
        want: to(V1, { headers: { "X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add", "Another-Header": "another-header-val" }, absent: ["x-header-remove"] }),
      },
    ]); // prettier-ignore
  });

  test("HTTPRouteResponseHeaderModifier: the backend's response fields set, added to, removed", async () => {
    await lab.apply(
      route("response-header-modifier", [
        rule("/set", [resMod(`set: ${pairs([["X-Header-Set", "set-overwrites-values"]])}`)], [V1]),
        rule("/add", [resMod(`add: ${pairs([["X-Header-Add", "add-appends-values"]])}`)], [V1]),
        rule("/remove", [resMod("remove: [X-Header-Remove]")], [V1]),
        rule("/multiple", [resMod(`set: ${pairs([["X-Header-Set-1", "header-set-1"], ["X-Header-Set-2", "header-set-2"]])}, add: ${pairs([["X-Header-Add-1", "header-add-1"], ["X-Header-Add-2", "header-add-2"], ["X-Header-Add-3", "header-add-3"]])}, remove: [X-Header-Remove-1, X-Header-Remove-2]`)], [V1]),
        rule("/case-insensitivity", [resMod(`set: ${pairs([["X-Header-Set", "header-set"]])}, add: ${pairs([["X-Header-Add", "header-add"], ["x-lowercase-add", "lowercase-add"], ["x-Mixedcase-ADD-1", "mixedcase-add-1"], ["X-mixeDcase-add-2", "mixedcase-add-2"], ["X-UPPERCASE-ADD", "uppercase-add"]])}, remove: [X-Header-Remove]`)], [V1]),
        rule("/response-and-request-header-modifiers", [resMod(`set: ${pairs([["X-Header-Set-1", "header-set-1"], ["X-Header-Set-2", "header-set-2"]])}, add: ${pairs([["X-Header-Add-1", "header-add-1"], ["X-Header-Add-2", "header-add-2"]])}, remove: [X-Header-Remove-1, X-Header-Remove-2]`), reqMod(MOD)], [V1]),
      ]), // prettier-ignore
    );
    accepted("response-header-modifier");
    const echo = (path: string, set: Record<string, string>, req: Record<string, string> = {}) => ({
      path,
      headers: {
        ...req,
        "X-Echo-Set-Header": Object.entries(set)
          .map(([k, v]) => `${k}:${v}`)
          .join(","),
      },
    });
    const o = "Some-Other-Header";
    await replay([
      { req: echo("/set", { [o]: "val" }), want: to(V1, { responseHeaders: { [o]: "val", "X-Header-Set": "set-overwrites-values" } }) },
      { req: echo("/set", { [o]: "val", "X-Header-Set": "some-other-value" }), want: to(V1, { responseHeaders: { [o]: "val", "X-Header-Set": "set-overwrites-values" } }) },
      { req: echo("/add", { [o]: "val" }), want: to(V1, { responseHeaders: { [o]: "val", "X-Header-Add": "add-appends-values" } }) },
      { req: echo("/add", { [o]: "val", "X-Header-Add": "some-other-value" }), want: to(V1, { responseHeaders: { [o]: "val", "X-Header-Add": "some-other-value,add-appends-values" } }) },
      { req: echo("/remove", { "X-Header-Remove": "val" }), want: to(V1, { responseAbsent: ["X-Header-Remove"] }) },
      {
        req: echo("/multiple", { "X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val", "X-Header-Remove-1": "val" }),
        want: to(V1, { responseHeaders: { "X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2", "X-Header-Add-3": "header-add-3", "Another-Header": "another-header-val" }, responseAbsent: ["X-Header-Remove-1", "X-Header-Remove-2"] }),
      },
      {
        req: echo("/case-insensitivity", { "x-header-set": "original-val-set", "x-header-add": "original-val-add", "x-header-remove": "original-val-remove", "Another-Header": "another-header-val" }),
        want: to(V1, { responseHeaders: { "X-Header-Set": "header-set", "X-Header-Add": "original-val-add,header-add", "X-Lowercase-Add": "lowercase-add", "X-Mixedcase-Add-1": "mixedcase-add-1", "X-Mixedcase-Add-2": "mixedcase-add-2", "X-Uppercase-Add": "uppercase-add", "Another-Header": "another-header-val" }, responseAbsent: ["x-header-remove"] }),
      },
      {
        req: echo("/response-and-request-header-modifiers", { "X-Header-Set-2": "set-val-2", "X-Header-Add-2": "add-val-2", "X-Header-Remove-2": "remove-val-2", "Another-Header": "another-header-val", "X-Header-Remove-1": "remove-val-1", "X-Header-Echo": "echo" }, { ...MOD_SENT, "X-Header-Echo": "echo" }),
        want: to(V1, { headers: { ...MOD_SEEN.headers, "X-Header-Echo": "echo" }, absent: MOD_SEEN.absent, responseHeaders: { "X-Header-Set-1": "header-set-1", "X-Header-Set-2": "header-set-2", "X-Header-Add-1": "header-add-1", "X-Header-Add-2": "add-val-2,header-add-2", "Another-Header": "another-header-val", "X-Header-Echo": "echo" }, responseAbsent: ["X-Header-Remove-1", "X-Header-Remove-2"] }),
      },
    ]); // prettier-ignore
  });

  test("HTTPRouteRequestMirror and RequestMultipleMirrors: each mirror backend gets the (modified) request too", async () => {
    await lab.apply(
      route("request-mirror", [
        rule("/mirror", [mirror(V2)], [V1]),
        rule("/mirror-and-modify-headers", [reqMod(MOD), mirror(V2)], [V1]),
        rule("/multi-mirror", [mirror(V2), mirror("infra-backend-v3")], [V1]),
        rule(
          "/multi-mirror-and-modify-request-headers",
          [reqMod(MOD), mirror(V2), mirror("infra-backend-v3")],
          [V1],
        ),
      ]),
    );
    accepted("request-mirror");
    const id = Date.now().toString(36);
    const paths = ["/mirror", "/mirror-and-modify-headers", "/multi-mirror", "/multi-mirror-and-modify-request-headers"].map((p) => `${p}?request-id=${id}`); // prettier-ignore
    await replay([
      { req: { path: paths[0] as string }, want: to(V1) },
      { req: { path: paths[1] as string, headers: MOD_SENT }, want: to(V1, MOD_SEEN) },
      { req: { path: paths[2] as string }, want: to(V1) },
      { req: { path: paths[3] as string, headers: MOD_SENT }, want: to(V1, MOD_SEEN) },
    ]);
    const want = [
      [V2, paths[0]],
      [V2, paths[1]],
      [V2, paths[2]],
      ["infra-backend-v3", paths[2]],
      [V2, paths[3]],
      ["infra-backend-v3", paths[3]],
    ];
    const missing = () =>
      want.filter(
        ([pod, p]) => !lab.echoLog().some((l) => l.startsWith(`${pod}-`) && l.endsWith(` GET ${p}`)),
      );
    await until("every mirror backend logged its copy", () => missing().length === 0, {
      ms: 20_000,
      detail: () => JSON.stringify(missing()),
    });
  });

  test("HTTPRouteBackendRequestHeaderModifier and ...BackendWeights: a backendRef's own modifiers, only when it is picked", async () => {
    const withMod = (b: string, fields: string, weight = 1) =>
      `{name: ${b}, port: 8080, weight: ${weight}, filters: [${reqMod(fields)}]}`;
    await lab.apply(
      route("request-header-modifier", [
        `  - matches: [{path: {type: PathPrefix, value: /set}}]\n    backendRefs: [${withMod(V1, `set: ${pairs([["X-Header-Set", "set-overwrites-values"]])}`)}]`,
        `  - matches: [{path: {type: PathPrefix, value: /add}}]\n    backendRefs: [${withMod(V1, `add: ${pairs([["X-Header-Add", "add-appends-values"]])}`)}]`,
        `  - matches: [{path: {type: PathPrefix, value: /remove}}]\n    backendRefs: [${withMod(V1, "remove: [X-Header-Remove]")}]`,
      ]) +
        route("request-header-modifier-backend-weights", [
          `  - matches: [{path: {type: PathPrefix, value: /weights}}]\n    backendRefs: [${withMod(V1, `set: ${pairs([["Backend", V1]])}`, 10)}, ${withMod(V2, `set: ${pairs([["Backend", V2]])}`, 10)}]`,
        ]),
    ); // prettier-ignore
    accepted("request-header-modifier");
    accepted("request-header-modifier-backend-weights");
    const o = "Some-Other-Header";
    await replay([
      { req: { path: "/set", headers: { [o]: "val", "X-Header-Set": "some-other-value" } }, want: to(V1, { headers: { [o]: "val", "X-Header-Set": "set-overwrites-values" } }) },
      { req: { path: "/add", headers: { "X-Header-Add": "some-other-value" } }, want: to(V1, { headers: { "X-Header-Add": "some-other-value,add-appends-values" } }) },
      { req: { path: "/remove", headers: { "X-Header-Remove": "val" } }, want: to(V1, { absent: ["X-Header-Remove"] }) },
    ]); // prettier-ignore
    const answers = await lab.send(Array.from({ length: 60 }, () => ({ path: "/weights" })));
    const wrong = answers.filter(
      (a) => !a.seen || !a.seen.pod.startsWith(`${a.seen.headers["Backend"] ?? "?"}-`),
    );
    assert.deepEqual(
      wrong.map((a) => a.seen ?? a.status),
      [],
    );
    assert.equal(new Set(answers.map((a) => a.seen?.headers["Backend"])).size, 2, "both backends picked");
  });

  test("HTTPRouteBackendRequestRedirect and HTTPRouteBackendURLRewrite: a backendRef's own RequestRedirect and URLRewrite", async () => {
    const own = (prefix: string, f: string) =>
      `  - matches: [{path: {type: PathPrefix, value: ${prefix}}}]\n    backendRefs: [{name: ${V1}, port: 8080, filters: [${f}]}]`;
    await lab.apply(
      route("backend-request-redirect", [
        own("/full", redirect("path: {type: ReplaceFullPath, replaceFullPath: /redirected-full}")),
        own("/prefix", redirect("path: {type: ReplacePrefixMatch, replacePrefixMatch: /redirected-prefix}")),
      ]) +
        route("backend-url-rewrite", [
          own("/rw-full", rewrite("path: {type: ReplaceFullPath, replaceFullPath: /rewritten-full}")),
          own("/rw-prefix", rewrite("path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten-prefix}")),
        ]),
    ); // prettier-ignore
    accepted("backend-request-redirect");
    accepted("backend-url-rewrite");
    await replay([
      { req: { path: "/full/original" }, want: { status: 302, redirect: { path: "/redirected-full" } } },
      { req: { path: "/prefix/original" }, want: { status: 302, redirect: { path: "/redirected-prefix/original" } } },
      { req: { path: "/rw-full/one" }, want: to(V1, { path: "/rewritten-full" }) },
      { req: { path: "/rw-prefix/one?x=1" }, want: to(V1, { path: "/rewritten-prefix/one?x=1" }) },
    ]); // prettier-ignore
  });

  test("HTTPRouteRequestPercentageMirror: percent and fraction mirror about that share of the requests", async () => {
    const share = (fields: string) =>
      `{type: RequestMirror, requestMirror: {backendRef: {name: ${V2}, port: 8080}, ${fields}}}`;
    await lab.apply(
      route("request-percentage-mirror", [
        rule("/percent-mirror", [share("percent: 20")], [V1]),
        rule("/percent-mirror-fraction", [share("fraction: {numerator: 25, denominator: 50}")], [V1]),
      ]),
    ); // prettier-ignore
    accepted("request-percentage-mirror");
    const id = `p${Date.now().toString(36)}`;
    const reqs = (path: string) => Array.from({ length: 200 }, (_, i) => ({ path: `${path}?id=${id}-${i}` }));
    const answers = await lab.send([...reqs("/percent-mirror"), ...reqs("/percent-mirror-fraction")]);
    assert.deepEqual(
      answers.filter((a) => a.seen?.pod.startsWith(V1) !== true).map((a) => a.status),
      [],
    );
    const mirrored = (path: string) =>
      lab.echoLog().filter((l) => l.startsWith(`${V2}-`) && l.includes(` GET ${path}?id=${id}-`)).length;
    // Binomial(200, p): 0.2 has a standard deviation of 5.7 requests, 0.5 of 7.1; the bounds are 4+ of them.
    await until(
      "the mirrored shares arrive",
      () => mirrored("/percent-mirror") >= 15 && mirrored("/percent-mirror-fraction") >= 70,
      {
        ms: 20_000,
        detail: () =>
          `${mirrored("/percent-mirror")} and ${mirrored("/percent-mirror-fraction")} of 200 mirrored`,
      },
    );
    assert.ok(mirrored("/percent-mirror") <= 65, `${mirrored("/percent-mirror")} of 200 mirrored at 20%`);
    assert.ok(
      mirrored("/percent-mirror-fraction") <= 130,
      `${mirrored("/percent-mirror-fraction")} of 200 at 25/50`,
    );
  });
});
