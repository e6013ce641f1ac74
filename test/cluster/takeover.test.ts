// A restarted agent takes over its previous run's keys (src/cluster/takeover.ts; needs the etcd
// binary): the first run stops without revoking (as a kill -9 leaves it), the second opens its
// session and is slow to start; after the first run's lease has run out, the node's record, its
// status, its ipcache entries and its identity claims are all still in etcd (the claim with its
// createRevision), and another node's keys were not touched.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { ClusterSession, type ClusterOptions } from "../../src/cluster/session.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const logger = pino({ level: "silent" });

describe(
  "cluster session: a restart takes over the previous run's keys (etcd)",
  { skip: skipWithoutEtcd() },
  () => {
    let etcd: EtcdHandle;
    before(async () => {
      etcd = await startEtcd();
    });
    after(async () => {
      await etcd?.stop();
    });
    const opts = (node: string): ClusterOptions => ({
      endpoints: [etcd.endpoint],
      node,
      nodeIp: { ipv4: "192.0.2.1" },
      labels: {},
      podCidrs: { configured: { ipv4: node === "a" ? "10.60.1.0/24" : "10.60.2.0/24" } },
      leaseTtlSeconds: 2,
      tunnel: "native",
      prefix: "takeover/",
    });

    test("the keys outlive the first run's lease while the second run is still starting", async () => {
      const admin = etcd.store({ prefix: "takeover/" });
      const keys = [
        "cluster/nodes/a",
        "cluster/status/a",
        "cluster/identities/a/300",
        "cluster/ipcache/a/10.60.1.5",
      ];
      const other = await ClusterSession.open(opts("a-2"), logger); // nodes/a-2: not a's to take
      const first = await ClusterSession.open(opts("a"), logger);
      let second: ClusterSession | undefined;
      try {
        await other.start();
        await first.start();
        await first.kv.txn({
          compare: [],
          ops: keys
            .slice(1)
            .map((key) => ({ type: "put", key, value: `{"v":1}`, lease: first.ctx.lease.id })),
        });
        const claimRev = (await admin.get("cluster/identities/a/300"))?.createRevision;
        const otherRec = await admin.get("cluster/nodes/a-2");
        await first.close(); // released, not revoked: the keys live until the lease runs out
        second = await ClusterSession.open(opts("a"), logger);
        // The second run has not started yet (no record published by it): the first lease runs out.
        await new Promise((r) => setTimeout(r, 4500));
        for (const key of keys) assert.ok(await admin.get(key), `${key} is still there`);
        assert.equal((await admin.get("cluster/identities/a/300"))?.createRevision, claimRev, "same claim");
        assert.deepEqual(await admin.get("cluster/nodes/a-2"), otherRec, "another node's record untouched");
      } finally {
        await second?.close({ revoke: true });
        await first.close();
        await other.close({ revoke: true });
        await admin.close();
      }
    });
  },
);
