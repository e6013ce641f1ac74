/**
 * observedGeneration as the suite's HTTPRouteObservedGenerationBump checks
 * it: re-applying a changed route raises its generation, and its status
 * conditions carry the new one; re-applying it unchanged keeps it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { nextGeneration } from "../../src/gateway/meta.js";
import type { HTTPRoute } from "../../src/gateway/model.js";
import { compileGateways } from "../../src/gateway/compile.js";
import { CLASS, gateway, HTTP_ALL } from "./fixtures.js";
import { parseGatewayResources } from "../../src/gateway/parse.js";

const ROUTE = (backend: string, generation = "") => `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: observed-generation-bump, namespace: infra${generation}}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: ${backend}, port: 8080}]}]
`;

const route = (text: string): HTTPRoute => parseGatewayResources(text, "r.yaml")[0] as HTTPRoute;

describe("gateway resource generation on re-apply", () => {
  test("a changed spec raises the generation by one; the same spec keeps it", () => {
    const first = nextGeneration(route(ROUTE("v1")), undefined);
    assert.equal(first.meta.generation, 1);
    const same = nextGeneration(route(ROUTE("v1")), first);
    assert.equal(same.meta.generation, 1);
    const changed = nextGeneration(route(ROUTE("v2")), same);
    assert.equal(changed.meta.generation, 2);
    assert.equal(nextGeneration(route(ROUTE("v3")), changed).meta.generation, 3);
  });

  test("a higher generation written in the file is kept", () => {
    const old = route(ROUTE("v1"));
    assert.equal(nextGeneration(route(ROUTE("v2", ", generation: 7")), old).meta.generation, 7);
  });

  test("the route's conditions carry the bumped generation as observedGeneration", () => {
    const bumped = nextGeneration(route(ROUTE("v2")), route(ROUTE("v1")));
    const st = compileGateways({
      resources: [...parseGatewayResources(CLASS + gateway(HTTP_ALL), "gw.yaml"), bumped],
      hasService: () => true,
      namespaceLabels: () => ({}),
      certificateProblem: () => undefined,
      addresses: ["10.0.0.1"],
      now: "2026-01-01T00:00:00Z",
    }).status.routes.get("HTTPRoute/infra/observed-generation-bump");
    assert.deepEqual(
      st?.parents[0]?.conditions.map((c) => [c.type, c.status, c.observedGeneration]),
      [
        ["Accepted", "True", 2],
        ["ResolvedRefs", "True", 2],
      ],
    );
  });
});
