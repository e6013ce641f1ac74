/**
 * What an endpoint create writes to the store (needs root): its address
 * lease and its record in one transaction, with no scan of the whole store
 * per create; a write the store refuses undoes the create whole (no
 * namespace, no veth, no lease, no record).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { EndpointsController } from "../../../src/agent/controllers/endpoints.js";
import { Ipam } from "../../../src/agent/ipam.js";
import { KEYS } from "../../../src/agent/records.js";
import { createNode, type NodeNetns } from "../../../src/datapath/endpoint.js";
import { cleanupPrefix, listNetns } from "../../../src/datapath/netns.js";
import { linkStates } from "../../../src/datapath/rtnl.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import type { TxnRequest } from "../../../src/store/store.js";
import { rootSkipReason } from "../../datapath/harness.js";
import { testDeps } from "./fake-deps.js";

const skip = rootSkipReason();

async function lab(
  f: (c: EndpointsController, store: EmbeddedStore, prefix: string, node: NodeNetns) => Promise<void>,
): Promise<void> {
  const prefix = `my3${randomBytes(2).toString("hex")}s`;
  const dir = await mkdtemp(join(tmpdir(), "membrane-epstore-"));
  const store = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
  try {
    const node = await createNode({
      netns: `${prefix}-node`,
      gateway4: "10.206.0.1",
      podCidr4: "10.206.0.0/24",
    });
    const c = new EndpointsController({
      ...testDeps(store),
      enforce: () => Promise.resolve({ ops: 1, ms: 0, endpointsChanged: 1 }),
      ipam: new Ipam({ store, ipv4: "10.206.0.0/24" }),
      netnsPrefix: `${prefix}-`,
      nodeNetns: node.netns,
      node: () => node,
      poolSize: 0,
    });
    await f(c, store, prefix, node);
    await c.stopVerification();
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
    await cleanupPrefix(prefix + "-");
  }
}

describe("endpoint create and the store (root)", { skip: skip ?? false }, () => {
  test("a create is one store transaction (lease and record), and creates do not list the store each", async () => {
    await lab(async (c, store) => {
      const txns: TxnRequest[] = [];
      let lists = 0;
      const txn = store.txn.bind(store);
      const list = store.list.bind(store);
      store.txn = (r) => (txns.push(r), txn(r));
      store.list = (p) => (lists++, list(p));
      for (const name of ["a", "b", "c"])
        await c.create({ name, namespace: "default", labels: { app: name } });
      assert.equal(txns.length, 3, `one transaction per create, not ${txns.length}`);
      for (const [i, t] of txns.entries()) {
        const keys = t.ops.map((o) => o.key.split("/")[0]).sort();
        assert.deepEqual(keys, ["endpoints", "ipam"], `create ${i}: the record and its lease together`);
        assert.equal(t.compare[0]?.modRevision, 0, "the address is taken only if nobody holds it");
      }
      assert.ok(lists <= 1, `the address pool is listed once, not ${lists} times`);
      const ips = (await c.list()).map((e) => e.ipv4);
      assert.equal(new Set(ips).size, 3, "three different addresses");
    });
  });

  test("a record write the store refuses undoes the create: no namespace, no veth, no lease, no record", async () => {
    await lab(async (c, store, prefix, node) => {
      const txn = store.txn.bind(store);
      let refused = 0;
      store.txn = (r) => {
        if (r.ops.some((o) => o.key.startsWith(KEYS.endpoints)) && refused++ === 0)
          return Promise.reject(new Error("store refused (test)"));
        return txn(r);
      };
      await assert.rejects(
        c.create({ name: "a", namespace: "default", labels: { app: "a" } }),
        /store refused/,
      );
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(`${prefix}-ep`)),
        [],
      );
      assert.equal([...(await linkStates(node.netns)).keys()].filter((l) => l.startsWith("mbr")).length, 0);
      assert.deepEqual((await store.list("ipam/")).kvs, [], "no lease left");
      assert.deepEqual((await store.list(KEYS.endpoints)).kvs, [], "no record left");
      assert.equal(c.size, 0);
      // The next create gets going as if nothing happened.
      const v = await c.create({ name: "a", namespace: "default", labels: { app: "a" } });
      assert.ok((await linkStates(node.netns)).get(v.hostIfname)?.up);
    });
  });

  test("the record's write overlaps the kernel work: the veth is made while the write is pending, the answer waits for the write, and a late refusal undoes it all", async () => {
    await lab(async (c, store, prefix, node) => {
      const txn = store.txn.bind(store);
      const gates: { open: (ok: boolean) => void }[] = [];
      store.txn = (r) => {
        // Only the create's own write is held (the undo's delete goes through).
        if (!r.ops.some((o) => o.type === "put" && o.key.startsWith(KEYS.endpoints))) return txn(r);
        return new Promise<boolean>((res) => gates.push({ open: res })).then((ok) =>
          ok ? txn(r) : Promise.reject(new Error("store refused late (test)")),
        );
      };
      const hostLinks = async (): Promise<string[]> =>
        [...(await linkStates(node.netns)).entries()].filter(([l, s]) => l.startsWith("mbr") && s.up).map(([l]) => l); // prettier-ignore
      const waitVeth = async (n: number): Promise<void> => {
        // A safety net, not a measure: the veth comes while the store write is held.
        for (let i = 0; i < 400 && (await hostLinks()).length < n; i++)
          await new Promise((r) => setTimeout(r, 25));
      };
      let answered = false;
      const ok = c.create({ name: "a", namespace: "default", labels: { app: "a" } }).then((v) => ((answered = true), v)); // prettier-ignore
      await waitVeth(1);
      assert.equal((await hostLinks()).length, 1, "the veth exists while the record's write is pending");
      assert.equal(answered, false, "the answer waits for the write");
      gates.shift()?.open(true);
      const v = await ok;
      assert.ok((await store.get(KEYS.endpoints + "default/a")) !== undefined, "the record is stored");
      assert.deepEqual(await hostLinks(), [v.hostIfname]);

      const late = c.create({ name: "b", namespace: "default", labels: { app: "b" } });
      await waitVeth(2);
      gates.shift()?.open(false);
      await assert.rejects(late, /store refused late/);
      for (let i = 0; i < 100 && (await hostLinks()).length > 1; i++)
        await new Promise((r) => setTimeout(r, 25));
      assert.deepEqual(await hostLinks(), [v.hostIfname], "the refused create's veth is gone");
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(`${prefix}-ep`)),
        [v.netns],
      );
      assert.equal((await store.list(KEYS.endpoints)).kvs.length, 1, "only a's record");
      assert.equal((await store.list("ipam/")).kvs.length, 1, "only a's lease");
      assert.equal(c.size, 1);
    });
  });
});
