/**
 * Remote endpoints: the store write and the kernel write overlap (the enforce
 * does not wait for the store's disk; the answer waits for both). A write the
 * store refuses puts the engine and the kernel back. A kernel left ahead of the
 * store by a crash in between is repaired by the next start (root: a scratch
 * namespace; a new Reconciler is what a restarted agent runs).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { RemoteEndpointsController } from "../../../src/agent/controllers/remote-endpoints.js";
import { createNode, type NamedNodeNetns } from "../../../src/datapath/endpoint.js";
import { runRaw } from "../../../src/datapath/exec.js";
import { cleanupPrefix } from "../../../src/datapath/netns.js";
import { Reconciler } from "../../../src/datapath/reconcile.js";
import type { DatapathState } from "../../../src/datapath/types.js";
import { HostTable } from "../../../src/ipcache/hosts.js";
import type { Store, TxnRequest, TxnResult } from "../../../src/store/store.js";
import { rootSkipReason, uniquePrefix } from "../../datapath/harness.js";
import { testDeps } from "./fake-deps.js";

/** A store whose transactions wait for the test to settle them. */
function heldStore(): {
  store: Store;
  held: { req: TxnRequest; ok: () => void; fail: (e: Error) => void }[];
} {
  const held: { req: TxnRequest; ok: () => void; fail: (e: Error) => void }[] = [];
  const txn = (req: TxnRequest): Promise<TxnResult> =>
    new Promise((resolve, reject) =>
      held.push({ req, ok: () => resolve({ succeeded: true, revision: 1 }), fail: reject }),
    );
  return { store: { txn } as unknown as Store, held };
}

const turns = async (n: number): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

const spec = { ip: "10.232.0.1", namespace: "default", labels: { app: "web" } };

describe("remote endpoints: the store write and the kernel write overlap", () => {
  test("the enforce runs while the store write is in flight, and the answer waits for the store", async () => {
    const { store, held } = heldStore();
    const d = testDeps(store);
    const c = new RemoteEndpointsController(d);
    let answered = false;
    const p = c.upsert([spec]).then((r) => ((answered = true), r));
    await turns(20);
    assert.equal(held.length, 1, "the store write is in flight");
    assert.equal(d.enforces, 1, "the enforce did not wait for the store");
    assert.equal(answered, false, "no answer before the store holds the change");
    held[0]?.ok();
    assert.equal((await p).changed, 1);
    assert.equal(c.size, 1);
  });

  test("a write the store refuses puts the engine back and enforces again: the request fails and changes nothing", async () => {
    const { store, held } = heldStore();
    const d = testDeps(store);
    const c = new RemoteEndpointsController(d);
    const p = c.upsert([spec]);
    await turns(20);
    assert.equal(d.enforces, 1);
    const seen: string[][] = [];
    const enforce = d.enforce;
    (d as { enforce: typeof enforce }).enforce = () => {
      seen.push(d.engineRef.remoteEndpoints().map((r) => r.spec.ip));
      return enforce();
    };
    held[0]?.fail(new Error("disk full"));
    await assert.rejects(
      p,
      (e: Error & { code?: string }) => e.code === "STORE_FAILED" && /disk full/.test(e.message),
    );
    assert.equal(c.size, 0, "the controller does not know the endpoint");
    assert.deepEqual(
      d.engineRef.remoteEndpoints().map((r) => r.spec.ip),
      [],
      "the engine does not hold it",
    );
    assert.deepEqual(seen, [[]], "the kernel was enforced again without it");
  });
});

const skip = rootSkipReason();

describe("remote endpoints: a kernel ahead of the store (root)", { skip: skip ?? false }, () => {
  const prefix = uniquePrefix("ro");
  let node: NamedNodeNetns;
  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("a host element written before a crash lost its store write is removed by the next start, by delta", async () => {
    const table = "mbrro";
    const hosts = (ips: string[]): DatapathState => {
      const h = new HostTable();
      for (const ip of ips) h.set(ip, 1001);
      return { hostIdentity: 1, rules: [], ipcache: [], hosts: h, endpoints: [] };
    };
    const list = async (): Promise<string> =>
      (await runRaw(["nft", "list", "map", "inet", table, "ipcache4_host"], { netns: node.netns })).stdout;
    const a = new Reconciler({ netns: node.netns, table });
    try {
      await a.apply(hosts(["10.232.0.1"]));
      // The change reached the kernel (by delta, as the agent writes it); then the agent died.
      assert.equal((await a.apply(hosts(["10.232.0.1", "10.232.0.2"]))).ops, 1);
      assert.match(await list(), /10\.232\.0\.2/);
    } finally {
      await a.stop();
    }
    // The restart rebuilds from the store, which never got 10.232.0.2.
    const b = new Reconciler({ netns: node.netns, table });
    try {
      const r = await b.apply(hosts(["10.232.0.1"]));
      assert.ok(r.ops >= 1, "the kernel was not adopted as it was");
      assert.equal(b.stats.adopted, 0, "the stamp did not match the store's state");
      const after = await list();
      assert.doesNotMatch(after, /10\.232\.0\.2/, "the element the store lacks is gone");
      assert.match(after, /10\.232\.0\.1/, "the rest stayed (no flush)");
      assert.equal((await b.verify()).drift, 0);
    } finally {
      await b.stop();
    }
  });
});
