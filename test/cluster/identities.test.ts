// Cluster-wide identities against a real etcd (needs the etcd binary): racing
// allocators, per-node references, a dead node's claims collected with its lease,
// numbers kept across an agent restart and an etcd restart.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { ClusterIdentities } from "../../src/cluster/identities.js";
import { labelsText } from "../../src/cluster/identity-claims.js";
import type { EtcdStore, StoreLease } from "../../src/store/etcd.js";
import { etcdBinary, silent, TestEtcd } from "./identities-etcd.js";
import { until } from "../support/until.js";

interface TestNode {
  readonly name: string;
  readonly kv: EtcdStore;
  readonly lease: StoreLease;
  readonly ids: ClusterIdentities;
  /** What the session (H3's session.ts) would call after granting the node a new lease. */
  readonly renewed: ((l: StoreLease) => Promise<void> | void)[];
}

const LABELS = (i: number): string[] => [`k8s:app=app${i}`, "k8s:io.kubernetes.pod.namespace=default"];

/** Retries `f` until it succeeds: after an etcd restart the client's circuit breaker refuses calls for a while. */
async function retrying<T>(f: () => Promise<T>): Promise<T> {
  let out: T | undefined;
  await until("etcd to answer again", () =>
    f().then(
      (v) => ((out = v), true),
      () => false,
    ),
  );
  return out as T;
}

describe(
  "cluster identities on a real etcd",
  { skip: etcdBinary() ? false : "the etcd binary is not installed (apt-get install etcd-server)" },
  () => {
    const etcd = new TestEtcd();
    const nodes: TestNode[] = [];
    let n = 0;
    let prefix = "";

    before(() => etcd.start());
    after(async () => {
      for (const x of nodes) {
        await x.ids.stop().catch(() => undefined);
        x.lease.release();
        await x.kv.close();
      }
      await etcd.destroy();
    });

    const fresh = (): string => (prefix = `id-${process.pid}-${n++}/`);
    async function node(name: string, ttl = 15): Promise<TestNode> {
      const kv = etcd.store(prefix);
      const lease = await kv.grantLease(ttl, () => undefined);
      const renewed: ((l: StoreLease) => Promise<void> | void)[] = [];
      const onLeaseRenewed = (cb: (l: StoreLease) => Promise<void> | void): (() => void) => {
        renewed.push(cb);
        return () => renewed.splice(renewed.indexOf(cb), 1);
      };
      const ids = new ClusterIdentities({
        ctx: { kv, lease, node: name, nodeIp: { ipv4: "192.0.2.1" }, logger: silent, onLeaseRenewed },
      });
      await ids.start();
      const x = { name, kv, lease, ids, renewed };
      nodes.push(x);
      return x;
    }
    async function kill(x: TestNode): Promise<void> {
      // kill -9: no revoke, the keep-alives stop; the claims live until the lease's TTL runs out.
      await x.ids.stop();
      x.lease.release();
    }

    test("N nodes allocating the same label sets at once end with one number per label set and one label set per number", async () => {
      fresh();
      const all = await Promise.all(["n1", "n2", "n3", "n4", "n5"].map((nm) => node(nm)));
      const sets = [0, 1, 2, 3, 4, 5, 6, 7].map(LABELS);
      // Every node allocates every label set, in a different order, all at once.
      const got = await Promise.all(
        all.map((x, k) =>
          Promise.all(
            sets
              .map((_, i) => sets[(i + k) % sets.length] as string[])
              .map((l) => x.ids.allocate(l).then((id) => [labelsText(l), id] as const)),
          ),
        ),
      );
      const byLabels = new Map<string, Set<number>>();
      const byNumber = new Map<number, Set<string>>();
      for (const row of got)
        for (const [l, id] of row) {
          byLabels.set(l, (byLabels.get(l) ?? new Set()).add(id));
          byNumber.set(id, (byNumber.get(id) ?? new Set()).add(l));
        }
      for (const [l, s] of byLabels) assert.equal(s.size, 1, `${l} got numbers ${[...s].join(",")}`);
      for (const [id, s] of byNumber) assert.equal(s.size, 1, `${id} went to ${[...s].join(" | ")}`);
      assert.equal(byLabels.size, 8);
      for (const id of byNumber.keys()) assert.ok(id >= 256 && id < 65536, `${id} in the cluster range`);
      // Every node's claims agree with the table every node sees (no loser left behind).
      const x = all[0] as TestNode;
      await until("every claim seen", () => x.ids.claims.size === 5 * 8);
      for (const [id, l] of x.ids.claims.numbers()) assert.deepEqual(byNumber.get(id), new Set([l]));
    });

    test("a label set another node holds gets that node's number; a new one gets a number nobody claims", async () => {
      fresh();
      const a = await node("a");
      const b = await node("b");
      const ia = await a.ids.allocate(LABELS(1));
      assert.equal(ia, 256);
      assert.equal(await b.ids.allocate(LABELS(1)), ia);
      assert.equal(await b.ids.allocate(LABELS(2)), 257);
      assert.deepEqual(b.ids.labelsOf(256), LABELS(1).sort());
    });

    test("a number stays taken while any node holds a claim, and is free once none does", async () => {
      fresh();
      const a = await node("a");
      const b = await node("b");
      const id = await a.ids.allocate(LABELS(1));
      await b.ids.allocate(LABELS(1));
      await a.ids.release(id);
      // b still uses it: a new label set must not get it.
      assert.notEqual(await a.ids.allocate(LABELS(2)), id);
      await b.ids.release(id);
      await until("b's release seen by a", () => !a.ids.claims.taken(id));
      assert.equal(await a.ids.allocate(LABELS(3)), id);
    });

    test("a dead node's claims vanish with its lease; numbers others still use are kept", async () => {
      fresh();
      const a = await node("a", 2);
      const b = await node("b");
      const shared = await a.ids.allocate(LABELS(1));
      const only = await a.ids.allocate(LABELS(2));
      assert.equal(await b.ids.allocate(LABELS(1)), shared);
      await kill(a);
      await until("a's claims collected", () => b.ids.claims.ofNode("a").length === 0);
      assert.equal(b.ids.numberOf(LABELS(1)), shared, "b's reference keeps the number");
      assert.equal(b.ids.numberOf(LABELS(2)), undefined);
      assert.equal(await b.ids.allocate(LABELS(3)), only, "the dead node's unshared number is free again");
    });

    test("an agent restart re-claims its numbers, before or after its old lease expired", async () => {
      fresh();
      const a1 = await node("a", 2);
      const first = await a1.ids.allocate(LABELS(1));
      const second = await a1.ids.allocate(LABELS(2));
      await kill(a1);
      // Restarted before the old lease expired: the same keys, the same createRevisions.
      const a2 = await node("a", 2);
      assert.equal(await a2.ids.reclaim(first, LABELS(1)), first);
      await kill(a2);
      // Restarted after: b took nothing meanwhile, so the numbers come back as they were.
      const b = await node("b");
      await until("a's claims collected", () => b.ids.claims.ofNode("a").length === 0);
      const a3 = await node("a");
      assert.equal(await a3.ids.reclaim(first, LABELS(1)), first);
      assert.equal(await a3.ids.reclaim(second, LABELS(2)), second);
      assert.equal(await b.ids.allocate(LABELS(1)), first);
    });

    test("a restarted node whose number was taken meanwhile for other labels gets another one", async () => {
      fresh();
      const a1 = await node("a", 2);
      const id = await a1.ids.allocate(LABELS(1));
      await kill(a1);
      const b = await node("b");
      await until("a's claims collected", () => b.ids.claims.ofNode("a").length === 0);
      assert.equal(await b.ids.allocate(LABELS(9)), id, "the number was free, b takes it");
      const a2 = await node("a");
      const again = await a2.ids.reclaim(id, LABELS(1));
      assert.notEqual(again, id);
      assert.equal(b.ids.labelsOf(id)?.join(","), labelsText(LABELS(9)), "b keeps what it claimed first");
      await until("a's withdrawal seen", () => b.ids.claims.ofNode("a").length === 1);
    });

    test("after its lease was lost, a node puts its claims back on a new lease and keeps its numbers", async () => {
      fresh();
      const a = await node("a", 2);
      const b = await node("b");
      const id = await a.ids.allocate(LABELS(1));
      await until("b sees a's claim", () => b.ids.claims.ofNode("a").length === 1);
      a.lease.release(); // keep-alives stop: the claims go with the lease
      await until("a's claims collected", () => b.ids.claims.ofNode("a").length === 0);
      const lease = await a.kv.grantLease(15, () => undefined);
      for (const cb of a.renewed) await cb(lease); // the session's onLeaseRenewed
      assert.equal(a.ids.heldNumber(LABELS(1)), id);
      await until("a's claim back", () => b.ids.claims.ofNode("a").length === 1);
      assert.equal(await b.ids.allocate(LABELS(1)), id);
      lease.release();
    });

    test("numbers survive an etcd restart, and allocation goes on after it", async () => {
      fresh();
      const a = await node("a");
      const b = await node("b");
      const one = await a.ids.allocate(LABELS(1));
      const two = await b.ids.allocate(LABELS(2));
      await etcd.stop();
      await assert.rejects(
        a.ids.allocate(LABELS(3)),
        /etcd|cluster identit/i,
        "no number while etcd is down",
      );
      await etcd.start();
      await until(
        "a's claims still there",
        async () => (await b.kv.list(`cluster/identities/a/`)).kvs.length === 1,
      );
      assert.equal(await retrying(() => b.ids.allocate(LABELS(1))), one);
      assert.equal(await retrying(() => a.ids.allocate(LABELS(2))), two);
      const three = await retrying(() => a.ids.allocate(LABELS(3)));
      assert.ok(three !== one && three !== two);
      assert.equal(await retrying(() => b.ids.allocate(LABELS(3))), three);
    });

    test("a node that rewrites its claim of a number with other labels does not take the number (on watchers and on a fresh list alike)", async () => {
      fresh();
      const a = await node("a");
      const b = await node("b");
      const id = await a.ids.allocate(LABELS(1));
      assert.equal(await b.ids.allocate(LABELS(1)), id);
      // a's own credentials may write its own claim key: it rewrites it to claim the number for other labels.
      await a.kv.put(`cluster/identities/a/${id}`, JSON.stringify({ v: 1, labels: LABELS(7) }));
      await until(
        "b sees the rewrite",
        () => b.ids.claims.get(`cluster/identities/a/${id}`)?.labels === labelsText(LABELS(7)),
      );
      assert.equal(b.ids.labelsOf(id)?.join(","), labelsText(LABELS(1)), "b: the number keeps its labels");
      const c = await node("c"); // lists the claims afresh
      assert.equal(
        c.ids.labelsOf(id)?.join(","),
        labelsText(LABELS(1)),
        "a fresh node: the number keeps its labels",
      );
      assert.equal(await c.ids.allocate(LABELS(1)), id);
      assert.notEqual(await c.ids.allocate(LABELS(7)), id);
    });

    test("claims of malformed shape are ignored, never trusted", async () => {
      fresh();
      const a = await node("a");
      await a.kv.put("cluster/identities/b/300", "not json");
      await a.kv.put("cluster/identities/B/301", JSON.stringify({ v: 1, labels: ["k8s:x=y"] }));
      await a.kv.put("cluster/identities/b/0x12", JSON.stringify({ v: 1, labels: ["k8s:x=y"] }));
      await a.kv.put("cluster/identities/b/302", JSON.stringify({ v: 2, labels: ["k8s:x=y"] }));
      const ids = new ClusterIdentities({
        ctx: { kv: a.kv, lease: a.lease, node: "c", nodeIp: {}, logger: silent },
      });
      await ids.start();
      nodes.push({ ...a, ids, renewed: [] });
      assert.equal(ids.claims.size, 0);
    });
  },
);
