/**
 * Gateway API conformance, replayed (root): the suite's GRPCRoute cases
 * (grpcroute-*.go at kubernetes-sigs/gateway-api 4564255) through the real
 * gateway process to gRPC pods serving the suite's
 * gateway_api_conformance.echo_basic.grpcecho.GrpcEcho, their Services' port
 * 8080 with appProtocol kubernetes.io/h2c as in the suite's base manifests.
 * Judged as the suite's gRPC client judges: the status code, and for OK the
 * full method the pod was called with and the pod's name (backend prefix).
 * Exact method matching, named rules, header matching (AND within a match,
 * OR across matches, precedence), listener hostname matching (a Gateway of
 * four listeners with hostnames, on its own address), RequestHeaderModifier
 * (also what the pod saw, per the manifest's rule order: the first of three
 * rules matching Echo wins; the suite's client does not compare headers),
 * weights 70/30/0. The cases are written here in our words from the suite's
 * contract.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { ConformanceLab, gatewayYaml, INFRA } from "./conformance-lab.js";
import type { GrpcAnswer } from "./grpc-lab.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces)" : false;

const SVC = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";
const ECHO = `/${SVC}/Echo`;
const TWO = `/${SVC}/EchoTwo`;
const THREE = `/${SVC}/EchoThree`;
const [V1, V2, V3] = ["grpc-infra-backend-v1", "grpc-infra-backend-v2", "grpc-infra-backend-v3"];
const UNIMPLEMENTED = 12;

interface GCase {
  readonly method: string;
  readonly authority?: string;
  readonly metadata?: Record<string, string>;
  /** The Service whose pod answers (OK); absent: `code`. */
  readonly backend?: string;
  readonly code?: number;
}

function grpcRoute(name: string, spec: string): string {
  return `---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: ${name}, namespace: ${INFRA}}
spec:
${spec}`;
}

const toRef = (b: string, w = ""): string => `{name: ${b}, port: 8080${w}}`;
const byMethod = (m: string, b: string, more = ""): string =>
  `  - matches: [{method: {service: ${SVC}, method: ${m}}}]\n${more}    backendRefs: [${toRef(b)}]\n`;

describe("Gateway API conformance: GRPCRoute (root)", { skip }, () => {
  let lab: ConformanceLab;
  before(async () => {
    lab = await ConformanceLab.start();
    await lab.startGrpc();
  });
  after(async () => {
    await lab?.destroy();
  });

  /** Each case's call (one channel each) and what the suite's client would say of it. */
  const replay = (cases: readonly GCase[], address?: string): GrpcAnswer[] => {
    const got = cases.map((c) => {
      const o = {
        ...(c.authority !== undefined ? { authority: c.authority } : {}),
        ...(c.metadata !== undefined ? { metadata: c.metadata } : {}),
        ...(address !== undefined ? { address } : {}),
      };
      return lab.grpc(c.method, 1, o)[0];
    });
    const problems = cases.flatMap((c, i) => {
      const a = got[i];
      const name = `${c.method} ${c.authority ?? ""} ${JSON.stringify(c.metadata ?? {})}`;
      const code = c.code ?? 0;
      if (a?.code !== code) return [`${name}: code ${a?.code} (${a?.details}), want ${code}`];
      if (code !== 0) return [];
      if (a.body?.method !== c.method) return [`${name}: the pod was called with ${a.body?.method}`];
      if (!a.body.backend.startsWith(`${c.backend ?? ""}-`)) return [`${name}: pod ${a.body.backend}, want ${c.backend}-*`];
      return [];
    }); // prettier-ignore
    assert.deepEqual(problems, []);
    return got.filter((a): a is GrpcAnswer => a !== undefined);
  };
  const accepted = (name: string, gw = "same-namespace"): string => {
    const st = lab.status().routes.get(`GRPCRoute/${INFRA}/${name}`);
    const cs = st?.parents.find((p) => p.parentRef.name === gw)?.conditions ?? [];
    return cs.map((c) => `${c.type}=${c.status}`).join(" ");
  };
  const OK = "Accepted=True ResolvedRefs=True";

  test("GRPCExactMethodMatching and GRPCRouteNamedRule: Echo and EchoTwo to their backends, EchoThree unimplemented", async () => {
    await lab.apply(grpcRoute("exact-matching", `  parentRefs: [{name: same-namespace}]\n  rules:\n${byMethod("Echo", V1)}${byMethod("EchoTwo", V2)}`)); // prettier-ignore
    assert.equal(accepted("exact-matching"), OK);
    replay([
      { method: ECHO, backend: V1 },
      { method: TWO, backend: V2 },
      { method: THREE, code: UNIMPLEMENTED },
    ]);
    await lab.apply(grpcRoute("grpc-named-rules", `  parentRefs: [{name: same-namespace}]\n  rules:\n${byMethod("Echo", V1).replace("  - matches", "  - name: named-rule\n    matches")}${byMethod("EchoTwo", V2)}`)); // prettier-ignore
    assert.equal(accepted("grpc-named-rules"), OK);
    replay([
      { method: ECHO, backend: V1 },
      { method: TWO, backend: V2 },
    ]);
  });

  test("GRPCRouteHeaderMatching: AND within a match, OR across matches, the more specific match first", async () => {
    const h = (pairs: [string, string][]): string =>
      `{headers: [${pairs.map(([n, v]) => `{name: ${n}, value: ${v}}`).join(", ")}]}`;
    const rule = (matches: string[], b: string): string => `  - matches: [${matches.join(", ")}]\n    backendRefs: [${toRef(b)}]\n`; // prettier-ignore
    await lab.apply(
      grpcRoute(
        "grpc-header-matching",
        `  parentRefs: [{name: same-namespace}]\n  rules:\n` +
          rule([h([["version", "one"]])], V1) +
          rule([h([["version", "two"]])], V2) +
          rule(
            [
              h([
                ["version", "two"],
                ["color", "orange"],
              ]),
            ],
            V1,
          ) +
          rule([h([["color", "blue"]]), h([["color", "green"]])], V1) +
          rule([h([["color", "red"]]), h([["color", "yellow"]])], V2),
      ),
    );
    assert.equal(accepted("grpc-header-matching"), OK);
    const c = (metadata: Record<string, string>, backend?: string): GCase =>
      backend ? { method: ECHO, metadata, backend } : { method: ECHO, metadata, code: UNIMPLEMENTED };
    replay([
      c({ Version: "one" }, V1),
      c({ Version: "two" }, V2),
      c({ Version: "two", Color: "orange" }, V1),
      c({ Version: "two", Color: "blue" }, V2),
      c({ Color: "orange" }),
      c({ "Some-Other-Header": "one" }),
      c({ Color: "blue" }, V1),
      c({ Color: "green" }, V1),
      c({ Color: "red" }, V2),
      c({ Color: "yellow" }, V2),
      c({ Color: "purple" }),
    ]);
  });

  test("GRPCRouteListenerHostnameMatching: a Gateway's four listeners by hostname, on its own address", async () => {
    const gw = "grpcroute-listener-hostname-matching";
    const listener = (n: number, host: string): string =>
      `{name: listener-${n}, port: 80, protocol: HTTP, hostname: "${host}", allowedRoutes: {namespaces: {from: Same}}}`;
    const parent = (n: number): string => `{name: ${gw}, namespace: ${INFRA}, sectionName: listener-${n}}`;
    const own = "10.232.4.3";
    await lab.apply(
      gatewayYaml(gw, [listener(1, "bar.com"), listener(2, "foo.bar.com"), listener(3, "*.bar.com"), listener(4, "*.foo.com")]) +
        grpcRoute("backend-v1", `  parentRefs: [${parent(1)}]\n  rules: [{backendRefs: [${toRef(V1)}]}]\n`) +
        grpcRoute("backend-v2", `  parentRefs: [${parent(2)}]\n  rules: [{backendRefs: [${toRef(V2)}]}]\n`) +
        grpcRoute("backend-v3", `  parentRefs: [${parent(3)}, ${parent(4)}]\n  rules: [{backendRefs: [${toRef(V3)}]}]\n`),
      { [gw]: own },
    ); // prettier-ignore
    for (const r of ["backend-v1", "backend-v2", "backend-v3"]) assert.equal(accepted(r, gw), OK, r);
    const c = (authority: string, backend?: string): GCase =>
      backend ? { method: ECHO, authority, backend } : { method: ECHO, authority, code: UNIMPLEMENTED };
    replay(
      [
        c("bar.com", V1),
        c("foo.bar.com", V2),
        c("baz.bar.com", V3),
        c("boo.bar.com", V3),
        c("multiple.prefixes.bar.com", V3),
        c("multiple.prefixes.foo.com", V3),
        c("foo.com"),
        c("no.matching.host"),
      ],
      own,
    );
  });

  test("GRPCRouteRequestHeaderModifier: set, add, remove; what the pod saw follows the first matching rule", async () => {
    const mod = (m: string): string =>
      `    filters: [{type: RequestHeaderModifier, requestHeaderModifier: ${m}}]\n`;
    await lab.apply(
      grpcRoute(
        "grpc-request-header-modifier",
        `  parentRefs: [{name: same-namespace}]\n  rules:\n` +
          byMethod("Echo", V1, mod("{set: [{name: X-Header-Set, value: set-overwrites-values}]}")) +
          byMethod("Echo", V1, mod("{add: [{name: X-Header-Add, value: add-appends-values}]}")) +
          byMethod("Echo", V1, mod("{remove: [X-Header-Remove]}")) +
          byMethod(
            "EchoTwo",
            V2,
            mod(
              "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], " +
                "add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}], " +
                "remove: [X-Header-Remove-1, X-Header-Remove-2]}",
            ),
          ),
      ),
    );
    assert.equal(accepted("grpc-request-header-modifier"), OK);
    const authority = SVC; // as the suite sends it: underscores in the authority
    const got = replay([
      { method: ECHO, authority, metadata: { "Some-Other-Header": "this-header-should-be-set" }, backend: V1 },
      { method: ECHO, authority, metadata: { "X-Header-Set": "this-value-should-be-overwritten" }, backend: V1 },
      { method: TWO, authority, metadata: { "X-Header-Set-2": "set-header-2", "X-Header-Add-2": "add-header-2", "X-Header-Remove-2": "should-be-removed-2", "Some-Other-Header": "another-header-val" }, backend: V2 },
    ]); // prettier-ignore
    const saw = (i: number, name: string): string | undefined =>
      got[i]?.body?.metadata?.[name]?.join(",").replace(/,\s*/g, ",");
    assert.deepEqual(
      [saw(0, "some-other-header"), saw(0, "x-header-set"), saw(1, "x-header-set")],
      ["this-header-should-be-set", "set-overwrites-values", "set-overwrites-values"],
    );
    assert.deepEqual(
      ["x-header-set-1", "x-header-set-2", "x-header-add-1", "x-header-add-2", "x-header-remove-2", "some-other-header"].map((n) => saw(2, n)),
      ["header-set-1", "header-set-2", "header-add-1", "add-header-2,header-add-2", undefined, "another-header-val"],
    ); // prettier-ignore
  });

  test("GRPCRouteWeight: 70/30/0 over 200 calls on one connection; the weight-0 backend gets none", async () => {
    await lab.apply(grpcRoute("weighted-backends", `  parentRefs: [{name: same-namespace}]\n  rules: [{backendRefs: [${toRef(V1, ", weight: 70")}, ${toRef(V2, ", weight: 30")}, ${toRef(V3, ", weight: 0")}]}]\n`)); // prettier-ignore
    assert.equal(accepted("weighted-backends"), OK);
    const count: Record<string, number> = {};
    for (const a of lab.grpc(ECHO, 200)) {
      const k = a.body?.backend.replace(/-7c9f-.*/, "") ?? `code ${a.code}`;
      count[k] = (count[k] ?? 0) + 1;
    }
    assert.equal((count[V1] ?? 0) + (count[V2] ?? 0), 200, JSON.stringify(count));
    // 0.7 of 200 has a standard deviation of 6.5 calls: ±30 is 4.6 of them (the suite allows ±5%, retrying).
    assert.ok(Math.abs((count[V1] ?? 0) - 140) <= 30, JSON.stringify(count));
  });
});
