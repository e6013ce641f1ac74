/**
 * Policies controller over a store that holds etcd's limit of operations per
 * transaction (STORE_TXN_OPS): a file larger than one transaction is applied
 * whole, and a failure in a later transaction leaves the store, the
 * controller and the engine as they were (all or none).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { EtcdLimits } from "./etcd-limits.js";
import { PoliciesController } from "../../../src/agent/controllers/policies.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { testDeps } from "./fake-deps.js";

const policy = (name: string, port: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: ${name}}}
  ingress: [{toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]}]
`;
const file = (names: string[], port: number) =>
  parsePolicies(names.map((n) => policy(n, port)).join("---\n"), "big.yaml");
const names = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

async function withStore(f: (s: EtcdLimits) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mbr-policies-chunked-"));
  const store = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
  try {
    await f(new EtcdLimits(store));
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function controller(s: EtcdLimits) {
  const d = testDeps(s.store);
  return { d, c: new PoliciesController({ ...d, kernelBehind: () => false }) };
}

/** key -> value of every stored policy. */
async function stored(s: EtcdLimits): Promise<Map<string, string>> {
  return new Map((await s.real.list("policies/")).kvs.map((kv) => [kv.key, kv.value]));
}

describe("policies controller: files larger than one store transaction", () => {
  test("a file of 300 policies is applied whole, in transactions of at most STORE_TXN_OPS, and deleted whole", () =>
    withStore(async (s) => {
      const { d, c } = controller(s);
      const all = names("p", 300);
      const r = await c.apply(file(all, 80), "big.yaml");
      assert.equal(r.policies.filter((p) => p.status === "created").length, 300);
      assert.equal((await stored(s)).size, 300);
      assert.deepEqual(s.sizes, [128, 128, 44]);
      assert.deepEqual([c.size, d.engineRef.listPolicies().length, c.revisions.desired], [300, 300, 1]);
      const del = await c.delete(
        file(all, 80).map((p) => p.ref),
        "big.yaml",
      );
      assert.equal(del.policies.length, 300);
      assert.deepEqual([(await stored(s)).size, c.size, d.engineRef.listPolicies().length], [0, 0, 0]);
    }));

  test("a failure in a later transaction of an apply leaves the store, the controller and the engine as before", () =>
    withStore(async (s) => {
      const { d, c } = controller(s);
      // 10 applied policies that the big file changes (its first operations: undone as puts of the old value).
      await c.apply(file(names("p", 10), 80), "small.yaml");
      const before = await stored(s);
      const [enforces, revision] = [d.enforces, c.revisions.desired];
      s.failAt = s.txns + 2;
      await assert.rejects(c.apply(file(names("p", 300), 81), "big.yaml"), {
        code: "STORE_FAILED",
        message: /injected failure of transaction/,
      });
      assert.deepEqual(await stored(s), before, "the store holds part of a failed apply");
      assert.deepEqual([c.size, d.engineRef.listPolicies().length], [10, 10]);
      assert.deepEqual([d.enforces, c.revisions.desired], [enforces, revision]);
      // The same file applies once the store works again: nothing of the failed one is "unchanged".
      s.failAt = undefined;
      const again = await c.apply(file(names("p", 300), 81), "big.yaml");
      assert.deepEqual(
        [
          again.policies.filter((p) => p.status === "updated").length,
          again.policies.filter((p) => p.status === "created").length,
        ],
        [10, 290],
      );
    }));

  test("a failure in a later transaction of a delete leaves every policy stored and applied", () =>
    withStore(async (s) => {
      const { d, c } = controller(s);
      await c.apply(file(names("p", 300), 80), "big.yaml");
      const before = await stored(s);
      s.failAt = s.txns + 3;
      await assert.rejects(
        c.delete(
          file(names("p", 300), 80).map((p) => p.ref),
          "big.yaml",
        ),
        { code: "STORE_FAILED", message: /injected failure of transaction/ },
      );
      assert.deepEqual(await stored(s), before);
      assert.deepEqual([c.size, d.engineRef.listPolicies().length], [300, 300]);
    }));
});
