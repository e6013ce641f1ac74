// Gateways' own addresses in cluster mode (agent/gateway-addresses.ts; needs the etcd binary): the
// reservations live on a lease of the node's, so a node gone for good gives its addresses back to the
// pool when that lease ends; a Gateway waiting for a full pool wakes on the change (a watch, no
// reading meanwhile); a node cut off from etcd stops serving its addresses before etcd can give them
// to another node, and does not get them back; a restart under the same name keeps them past the
// old lease; nodes naming their gateway namespaces alike never take each other's reservations. Each
// node's reservations live under its own key, lb/gateways/<node>/<address>.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { EtcdStore } from "../../src/store/etcd.js";
import { countingLists } from "../support/counting-store.js";
import { tcpRelay } from "../support/tcp-relay.js";
import { until } from "../support/until.js";

const logger = pino({ level: "silent" });
const PREFIX = "m17-gwaddr/";
// A /30 has one address to give (lb/allocate.ts skips the network, the first host and the last).
const POOL = { loadBalancerPool: "192.0.2.0/30" };
/** A node's reservation of the pool's address (lb/reservations.ts: under the node's own prefix). */
const key = (node: string): string => `lb/gateways/${node}/192.0.2.2`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function node(store: EtcdStore, name: string, ttl: number, netns = `m17-${name}-gateway`): GatewayAddresses {
  return new GatewayAddresses({
    store,
    logger,
    netns,
    pool: POOL,
    cluster: { node: name, grantLease: (t, onLost) => store.grantLease(t, onLost), leaseTtlSeconds: ttl },
  });
}

describe(
  "gateway addresses on etcd: a node's reservations end with its lease",
  { skip: skipWithoutEtcd() },
  () => {
    let etcd: EtcdHandle;
    const stores: EtcdStore[] = [];
    const store = (): EtcdStore => {
      const s = etcd.store({ prefix: PREFIX });
      stores.push(s);
      return s;
    };
    before(async () => {
      etcd = await startEtcd();
    });
    after(async () => {
      for (const s of stores) await s.close().catch(() => undefined);
      await etcd?.stop();
    });
    const clear = async (): Promise<void> => {
      const s = store();
      for (const kv of (await s.list("lb/")).kvs) await s.delete(kv.key);
    };

    test("a node gone for good: its address goes back to the pool, and a Gateway waiting elsewhere wakes and takes it", async () => {
      await clear();
      const n1 = node(store(), "n1", 3);
      const s2 = store();
      const c2 = countingLists(s2);
      const n2 = new GatewayAddresses({
        store: c2.store,
        logger,
        netns: "m17-n2-gateway",
        pool: POOL,
        cluster: { node: "n2", grantLease: (t, onLost) => s2.grantLease(t, onLost), leaseTtlSeconds: 10 },
      });
      let woke = 0;
      n2.onChange(() => woke++);
      try {
        await n1.load();
        await n2.load();
        assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.2"]);
        assert.deepEqual(await n2.reserve(["infra/b"]), [], "the pool is full");
        const read = c2.lists();
        assert.deepEqual(await n2.reserve(["infra/b"]), []);
        assert.deepEqual(await n2.reserve(["infra/b"]), []);
        assert.equal(c2.lists(), read, "a full pool is not read again before it changes");
        await n1.stop(); // its agent is gone (kill -9): no keep-alive, nothing deleted by it
        await until("the waiting Gateway is woken by the end of n1's lease", () => woke > 0, 30_000);
        assert.deepEqual(await n2.reserve(["infra/b"]), ["192.0.2.2"]);
        assert.equal((await store().get(key("n2")))?.value, "gateway n2 m17-n2-gateway infra/b");
      } finally {
        await n1.stop();
        await n2.stop();
      }
    });

    test("cut off from etcd, a node stops serving its address before etcd can give it away, and does not get it back", async () => {
      await clear();
      const r = await tcpRelay(etcd.endpoint);
      const s1 = new EtcdStore({ endpoints: [r.endpoint], logger, prefix: PREFIX, dialTimeoutMs: 1000 });
      stores.push(s1);
      const n1 = node(s1, "n1", 4);
      const n2 = node(store(), "n2", 10);
      let n1AtWake: Record<string, string[]> | undefined;
      n2.onChange(() => (n1AtWake ??= n1.assigned(["infra/a"])));
      try {
        await n1.load();
        await n2.load();
        await n1.reserve(["infra/a"]);
        assert.deepEqual(n1.assigned(["infra/a"]), { "infra/a": ["192.0.2.2"] });
        await n2.reserve(["infra/b"]); // full: waits
        r.cut();
        await until(
          "etcd ends n1's lease and n2 sees its address free",
          () => n1AtWake !== undefined,
          30_000,
        );
        assert.deepEqual(n1AtWake, { "infra/a": [] }, "n1 no longer served the address when etcd freed it");
        assert.deepEqual(await n2.reserve(["infra/b"]), ["192.0.2.2"]);
        r.heal();
        // n1 learns that its lease ended, takes a new one and reserves anew: the pool is full.
        await until("n1 is back on a new lease", async () => {
          await n1.reserve(["infra/a"]).catch(() => []);
          return !n1.fenced;
        });
        assert.deepEqual(n1.assigned(["infra/a"]), { "infra/a": [] });
        assert.equal((await store().get(key("n2")))?.value, "gateway n2 m17-n2-gateway infra/b");
      } finally {
        await n1.stop();
        await n2.stop();
        await r.close();
      }
    });

    test("a restart under the same node name keeps the address after the last run's lease ended", async () => {
      await clear();
      const first = node(store(), "n1", 2);
      await first.load();
      await first.reserve(["infra/a"]);
      await first.stop(); // released, not revoked: as an agent killed and started again
      const again = node(store(), "n1", 10);
      try {
        await again.load();
        await sleep(5000); // past the first run's lease (2 s)
        assert.equal((await store().get(key("n1")))?.value, "gateway n1 m17-n1-gateway infra/a");
        assert.deepEqual(again.assigned(["infra/a"]), { "infra/a": ["192.0.2.2"] });
      } finally {
        await again.stop();
      }
    });

    test("two nodes whose gateway namespaces are named alike never take each other's reservations", async () => {
      await clear();
      const n2 = node(store(), "n2", 10, "m17-gateway");
      const n1 = node(store(), "n1", 10, "m17-gateway");
      try {
        await n2.load();
        await n2.reserve(["infra/a"]);
        await n1.load(); // a restart of n1: it reads what its own Gateways hold
        assert.deepEqual(n1.assigned(["infra/a"]), { "infra/a": [] });
        assert.deepEqual(await n1.release([]), []);
        assert.equal((await store().get(key("n2")))?.value, "gateway n2 m17-gateway infra/a");
      } finally {
        await n1.stop();
        await n2.stop();
      }
    });
  },
);
