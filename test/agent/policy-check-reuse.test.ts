/**
 * The API's policy parser (policy-check.ts) keeps its worker threads between files:
 * starting a worker and loading the parser costs ~280 ms of CPU, which every apply
 * through the API used to pay. A file's own error leaves the worker in use; answers
 * never cross between files.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { MembraneError } from "../../src/errors.js";
import { PolicyChecker } from "../../src/agent/policy-check.js";

const policy = (name: string, port: number): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]
`;

describe("PolicyChecker keeps its workers warm", () => {
  test("files parsed one after another use one worker, a refused file included", async () => {
    const c = new PolicyChecker();
    for (let i = 0; i < 3; i++) {
      const r = await c.parse(policy(`p${i}`, 5000 + i), `f${i}.yaml`, false);
      assert.deepEqual(
        r.resources.map((x) => x.ref.name),
        [`p${i}`],
      );
    }
    await assert.rejects(c.parse("kind: [", "bad.yaml", false), (e: unknown) => e instanceof MembraneError);
    const r = await c.parse(policy("after", 80), "after.yaml", false);
    assert.deepEqual(
      r.resources.map((x) => x.ref.name),
      ["after"],
    );
    assert.equal(c.workersStarted, 1);
  });

  test("warm() starts the worker ahead; a parse sent while it warms gets its own answer", async () => {
    const c = new PolicyChecker();
    c.warm();
    const [a, b] = await Promise.all([
      c.parse(policy("one", 1), "one.yaml", false),
      c.parse(policy("two", 2), "two.yaml", false),
    ]);
    assert.deepEqual([a.resources[0]?.ref.name, b.resources[0]?.ref.name], ["one", "two"]);
    assert.ok(c.workersStarted <= 2, `workers started: ${c.workersStarted}`);
    const again = await c.parse(policy("three", 3), "three.yaml", false);
    assert.equal(again.resources[0]?.ref.name, "three");
    assert.ok(c.workersStarted <= 2, "no new worker for a later file");
  });
});
