// Peer routes follow the registry without needless work: a registry change that leaves the peers to
// route to as they were (a peer's labels changed) runs no reconcile (each reads the kernel with
// `ip`: with 100 nodes registering this was the agent's largest CPU cost, bench/cluster.ts);
// a new peer does, and gets its route.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import { nodeKey, podCidrKey, type NodeRecordV1 } from "../../src/cluster/keys.js";
import { NodeView } from "../../src/cluster/node-view.js";
import { ClusterRouting } from "../../src/cluster/routing.js";
import { readPeerState } from "../../src/datapath/peer-routes.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import { Underlay } from "../../src/lab/underlay.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const record = (name: string, ip: string, cidr: string, labels: Record<string, string>): NodeRecordV1 => ({
  v: 1,
  name,
  addresses: { ipv4: ip },
  podCidrs: [cidr],
  labels,
  routing: "native",
  bootId: "b",
  startedAt: "2026-01-01T00:00:00.000Z",
});

describe("peer routes from the registry (root)", { skip: rootSkipReason() ?? skipWithoutEtcd() }, () => {
  test("a change that leaves the peers as they were runs no reconcile; a new peer does and gets its route", async () => {
    const etcd = await startEtcd();
    const u = await Underlay.create(uniquePrefix("cbrs"));
    const kv = etcd.store({ prefix: "rs/" });
    const view = new NodeView(kv, pino({ level: "silent" }));
    let routing: ClusterRouting | undefined;
    try {
      const n = await u.node(1);
      const put = async (r: NodeRecordV1): Promise<void> => {
        await kv.put(podCidrKey(r.name), JSON.stringify({ v: 1, ipv4: r.podCidrs[0], allocated: false }));
        await kv.put(nodeKey(r.name), JSON.stringify(r));
      };
      await put(record("self", n.ip, "10.90.0.0/24", {}));
      await put(record("p1", "172.31.0.50", "10.90.1.0/24", { zone: "a" }));
      await view.start();
      routing = new ClusterRouting({
        node: "self",
        view,
        routing: { netns: n.netns, mode: "native", localIp: n.ip },
        logger: pino({ level: "silent" }),
      });
      await routing.trigger();
      assert.equal((await readPeerState(n.netns, n.ip)).routes.size, 1);
      const before = routing.reconciles;

      // p1's labels change: the view changes, the peers do not.
      const seen = (want: (labels: Record<string, string>) => boolean, who: string): Promise<void> =>
        new Promise((resolve) =>
          view.onChange((s) => {
            const l = s.records.get(who)?.record.labels;
            if (l && want(l)) resolve();
          }),
        );
      const relabelled = seen((l) => l["zone"] === "b", "p1");
      await kv.put(nodeKey("p1"), JSON.stringify(record("p1", "172.31.0.50", "10.90.1.0/24", { zone: "b" })));
      await relabelled;
      assert.equal(routing.reconciles, before, "no reconcile for a change that routes nothing new");

      // A new peer: reconciled, routed.
      const joined = seen(() => true, "p2");
      await put(record("p2", "172.31.0.51", "10.90.2.0/24", {}));
      await joined;
      await routing.trigger();
      assert.ok(routing.reconciles > before);
      assert.equal((await readPeerState(n.netns, n.ip)).routes.size, 2);
    } finally {
      await routing?.stop();
      await view.stop();
      await kv.close();
      await u.destroy();
      await etcd.stop();
    }
  });
});
