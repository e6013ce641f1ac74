// A node's lease through an etcd outage (needs the etcd binary): etcd stopped for longer than twice
// the TTL and started again refreshes every lease, so a lease whose holder keeps sending keep-alives
// lives on with its keys (no "lost", nothing for peers to see vanish and come back); a lease that
// etcd itself dropped (revoked elsewhere, or expired while the node was cut off) is reported lost.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { Etcd3 } from "etcd3";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import { TestEtcd } from "./identities-etcd.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("etcd lease through an etcd outage (etcd)", { skip: skipWithoutEtcd() }, () => {
  const etcd = new TestEtcd();
  let s: EtcdStore;
  before(async () => {
    await etcd.start();
    s = etcd.store("lease-outage/");
  });
  after(async () => {
    await s?.close();
    await etcd.destroy();
  });

  test("etcd down for 3 TTLs: the lease is not lost and its key outlives the TTL after etcd's return", async () => {
    const lost: Error[] = [];
    const lease = await s.grantLease(2, (e) => lost.push(e));
    try {
      await s.txn({ compare: [], ops: [{ type: "put", key: "k", value: "v", lease: lease.id }] });
      await etcd.stop();
      await sleep(6000);
      await etcd.start();
      // etcd restarted the lease's TTL at its start: kept alive, it outlives that TTL and more.
      await sleep(5000);
      assert.deepEqual(
        lost.map((e) => e.message),
        [],
        "an unreachable etcd is not a lost lease",
      );
      assert.equal((await s.get("k"))?.value, "v", "the key lives on with its lease");
    } finally {
      await lease.revoke().catch(() => undefined);
    }
  });

  test("a lease etcd dropped (revoked by another client) is reported lost once", async () => {
    const lost: Error[] = [];
    const lease = await s.grantLease(2, (e) => lost.push(e));
    const c = new Etcd3({ hosts: [etcd.endpoint] });
    try {
      await c.leaseClient.leaseRevoke({ ID: lease.id });
    } finally {
      c.close();
    }
    const t0 = Date.now();
    while (lost.length === 0 && Date.now() - t0 < 20_000) await sleep(100); // safety net
    await sleep(2000);
    assert.equal(lost.length, 1, "lost once");
    assert.match(lost[0]?.message ?? "", /lease/);
    lease.release();
  });
});
