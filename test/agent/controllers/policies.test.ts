/**
 * Policies controller (agent/controllers/policies.ts) over a real embedded
 * store: statuses of an apply, no revision for an unchanged policy, a delete
 * is all or none, and what was stored comes back on restore.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { MembraneError } from "../../../src/errors.js";
import { PoliciesController } from "../../../src/agent/controllers/policies.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { testDeps } from "./fake-deps.js";

const policy = (name: string, port: number) => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ${name}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress: [{toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]}]
`;
const parse = (text: string) => parsePolicies(text, "p.yaml");

async function withStore(f: (store: EmbeddedStore, dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "mbr-policies-ctl-"));
  const store = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
  try {
    await f(store, dir);
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function controller(store: EmbeddedStore) {
  const d = testDeps(store);
  let behind = false;
  const c = new PoliciesController({ ...d, kernelBehind: () => behind });
  return { d, c, setBehind: (b: boolean) => (behind = b) };
}

describe("policies controller", () => {
  test("apply reports created, unchanged and updated; only changes bump the revision and enforce", () =>
    withStore(async (store) => {
      const { d, c } = controller(store);
      const a = await c.apply(parse(policy("a", 80)), "p.yaml");
      assert.deepEqual(
        a.policies.map((p) => p.status),
        ["created"],
      );
      const again = await c.apply(parse(policy("a", 80)), "p.yaml");
      assert.deepEqual(
        again.policies.map((p) => p.status),
        ["unchanged"],
      );
      assert.deepEqual([again.kernelOps, d.enforces, c.revisions.desired], [0, 1, 1]);
      const upd = await c.apply(parse(policy("a", 81)), "p.yaml");
      assert.deepEqual(
        upd.policies.map((p) => p.status),
        ["updated"],
      );
      assert.deepEqual([d.enforces, c.revisions.desired, c.size], [2, 2, 1]);
    }));

  test("list counts the endpoints each policy selects", () =>
    withStore(async (store) => {
      const { d, c } = controller(store);
      const db = policy("db", 5432).replace("app: web", "app: db");
      await c.apply(parse(`${policy("a", 80)}---\n${policy("b", 81)}---\n${db}`), "p.yaml");
      for (const [name, app, ip] of [
        ["w1", "web", "10.0.0.1"],
        ["w2", "web", "10.0.0.2"],
        ["d1", "db", "10.0.0.3"],
        ["x1", "other", "10.0.0.4"],
      ] as const)
        d.engineRef.upsertEndpoint({ name, namespace: "default", labels: { app }, ips: [ip] });
      assert.deepEqual(
        c.list().map((p) => [p.name, p.selects]),
        [
          ["a", 2],
          ["b", 2],
          ["db", 1],
        ],
      );
    }));

  test("an unchanged apply enforces when the kernel lags the engine", () =>
    withStore(async (store) => {
      const { d, c, setBehind } = controller(store);
      await c.apply(parse(policy("a", 80)), "p.yaml");
      setBehind(true);
      await c.apply(parse(policy("a", 80)), "p.yaml");
      assert.deepEqual([d.enforces, c.revisions.desired], [2, 1]);
    }));

  test("deleting a policy that is not applied changes nothing and names it", () =>
    withStore(async (store) => {
      const { d, c } = controller(store);
      await c.apply(parse(policy("a", 80)), "p.yaml");
      const refs = [...parse(policy("a", 80)), ...parse(policy("zz", 80))].map((r) => r.ref);
      await assert.rejects(c.delete(refs, "p.yaml"), {
        code: "POLICY_NOT_FOUND",
        message: /CiliumNetworkPolicy default\/zz/,
      });
      assert.deepEqual([c.size, d.enforces, d.engineRef.listPolicies().length], [1, 1, 1]);
      assert.equal((await store.list("policies/")).kvs.length, 1);
    }));

  test("a failed enforce says the change is stored, and the store holds it", () =>
    withStore(async (store) => {
      const { d, c } = controller(store);
      d.failWith = new MembraneError("NFT_APPLY_FAILED", "nft refused");
      await assert.rejects(c.apply(parse(policy("a", 80)), "p.yaml"), { hint: /The change is stored/ });
      assert.equal((await store.list("policies/")).kvs.length, 1);
    }));

  test("a restarted controller restores every stored policy into the engine", () =>
    withStore(async (store) => {
      const first = controller(store);
      await first.c.apply(parse(policy("a", 80) + "---\n" + policy("b", 443)), "p.yaml");
      const second = controller(store);
      await second.c.restore();
      assert.equal(second.c.size, 2);
      assert.equal(second.d.engineRef.listPolicies().length, 2);
      assert.equal(second.c.revisions.desired, 1);
      const again = await second.c.apply(parse(policy("b", 443)), "p.yaml");
      assert.deepEqual(
        again.policies.map((p) => p.status),
        ["unchanged"],
      );
    }));
});
