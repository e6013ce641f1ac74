// Mixed versions during a rolling upgrade (agent/gateway-legacy.ts, real etcd): agents before
// session 18 reserve Gateway addresses under lb/alloc/ip/<address> and never read lb/gateways/.
// Without etcd auth a new agent also writes its reservation there (the mirror: same holder, same
// lease, same transaction), so an older agent's reservation of that address (a raw transaction
// shaped like its code: compare the key absent, put it) fails, and its read skips the address;
// the mirror follows the reservation through restart, release and the upgrade paths. Under the
// least-privilege roles an older agent cannot write lb/alloc/ at all (etcd refuses it), so the new
// agent writes no mirror there and is not refused for it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Etcd3, Range } from "etcd3";
import { pino } from "pino";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { ClusterResourceStore } from "../../src/cluster/resource-store.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import { freeLoadBalancerIP } from "../../src/lb/allocate.js";
import { inUseOf } from "../../src/lb/reservations.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import type { Store } from "../../src/store/store.js";
import { startAuthEtcd } from "../support/etcd-auth.js";

const POOL = { loadBalancerPool: "192.0.2.0/29" }; // .2 to .6
const OLD = "lb/alloc/ip/";
const skip = skipWithoutEtcd();

function node(
  kv: EtcdStore,
  name: string,
  log: string[] = [],
  store: Store = new ClusterResourceStore(kv, kv),
): GatewayAddresses {
  // prettier-ignore
  return new GatewayAddresses({
    store,
    logger: pino({ level: "warn" }, { write: (line: string) => void log.push(line) }),
    netns: `e19-${name}-gateway`,
    pool: POOL,
    cluster: { node: name, storePrefix: kv.prefix, grantLease: (t, l) => kv.grantLease(t, l), leaseTtlSeconds: 30 }, // prettier-ignore
  });
}

/** An agent before session 18 reserving `ip` as its code did: the key compared absent, then put. */
const oldReserve = (s: Store, ip: string, holder: string): Promise<boolean> =>
  s.txn({ compare: [{ key: OLD + ip, modRevision: 0 }], ops: [{ type: "put", key: OLD + ip, value: holder }] }).then((r) => r.succeeded); // prettier-ignore

/** The address an agent before session 18 would pick: the first one lb/alloc/ip/ does not hold. */
async function oldPick(s: Store): Promise<string | undefined> {
  const { kvs } = await s.list(OLD);
  return freeLoadBalancerIP(POOL, "IPv4", inUseOf([], kvs.map((kv): [string, string] => [kv.key, kv.value]))); // prettier-ignore
}

test(
  "no etcd auth: an older agent's reservation of a new agent's Gateway address fails, its read skips it; the mirror follows restart, release and the upgrade paths",
  { skip },
  async () => {
    const etcd = await startEtcd();
    const kv = etcd.store();
    const raw = new Etcd3({ hosts: [etcd.endpoint] });
    const store = new ClusterResourceStore(kv, kv);
    const lease = async (k: string): Promise<string | undefined> => (await raw.get(`membrane/cluster/${k}`).exec()).kvs[0]?.lease; // prettier-ignore
    const log: string[] = [];
    let n1 = node(kv, "n1", log);
    try {
      assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.2"]);
      const holder = "gateway n1 e19-n1-gateway infra/a";
      assert.equal((await store.get("lb/gateways/n1/192.0.2.2"))?.value, holder);
      assert.equal((await store.get(`${OLD}192.0.2.2`))?.value, holder, "mirrored where older agents look");
      const l1 = await lease("lb/gateways/n1/192.0.2.2");
      assert.ok(l1 !== undefined && l1 !== "0");
      assert.equal(await lease(`${OLD}192.0.2.2`), l1, "on the reservation's lease");

      // Node n2 still runs an agent before session 18: its Gateway and its Services reserve as its code did.
      assert.equal(await oldReserve(store, "192.0.2.2", "gateway n2 e19-n2-gateway infra/b"), false, "an older agent's Gateway"); // prettier-ignore
      assert.equal(await oldReserve(store, "192.0.2.2", "default/web"), false, "an older agent's Service");
      assert.equal(await oldPick(store), "192.0.2.3", "its read skips the address");
      assert.equal((await store.get(`${OLD}192.0.2.2`))?.value, holder);

      // A restart: both on the new lease; the mirror is not taken for an older agent's reservation.
      await n1.stop();
      n1 = node(kv, "n1", log);
      await n1.load();
      assert.deepEqual(n1.assigned(["infra/a"]), { "infra/a": ["192.0.2.2"] });
      const l2 = await lease("lb/gateways/n1/192.0.2.2");
      assert.notEqual(l2, l1);
      assert.equal(await lease(`${OLD}192.0.2.2`), l2);

      // Released: both keys gone, the address free for every version.
      assert.deepEqual(await n1.release([]), ["192.0.2.2"]);
      assert.equal(await store.get("lb/gateways/n1/192.0.2.2"), undefined);
      assert.equal(await store.get(`${OLD}192.0.2.2`), undefined);
      await n1.stop();

      // The upgrade paths at load: a session-18 reservation (no mirror) gets one; a reservation of an
      // agent before session 18 moves to the node's key and stays as the mirror; an address an older
      // agent took meanwhile under lb/alloc/ip/ is left to it and said.
      await store.put("lb/gateways/n1/192.0.2.3", "gateway n1 e19-n1-gateway infra/b");
      await store.put(`${OLD}192.0.2.4`, "gateway n1 e19-n1-gateway infra/c");
      await store.put("lb/gateways/n1/192.0.2.5", "gateway n1 e19-n1-gateway infra/d");
      await store.put(`${OLD}192.0.2.5`, "gateway n2 e19-n2-gateway infra/x");
      n1 = node(kv, "n1", log);
      await n1.load();
      assert.deepEqual(n1.assigned(["infra/b", "infra/c", "infra/d"]), {
        "infra/b": ["192.0.2.3"],
        "infra/c": ["192.0.2.4"],
        "infra/d": [],
      });
      const l3 = await lease("lb/gateways/n1/192.0.2.3");
      for (const k of [`${OLD}192.0.2.3`, "lb/gateways/n1/192.0.2.4", `${OLD}192.0.2.4`])
        assert.equal(await lease(k), l3, `${k} on the new lease`);
      assert.equal((await store.get(`${OLD}192.0.2.3`))?.value, "gateway n1 e19-n1-gateway infra/b");
      assert.equal((await store.get(`${OLD}192.0.2.4`))?.value, "gateway n1 e19-n1-gateway infra/c");
      assert.equal((await store.get(`${OLD}192.0.2.5`))?.value, "gateway n2 e19-n2-gateway infra/x", "not overwritten"); // prettier-ignore
      const msgs = log.map((l) => (JSON.parse(l) as { msg: string }).msg);
      assert.ok(msgs.some((m) => /192\.0\.2\.5 is also reserved under lb\/alloc\/ip\/192\.0\.2\.5 by "gateway n2 .*an older agent.*gets another address/.test(m)), msgs.join("\n")); // prettier-ignore
      assert.equal(
        await store.get("lb/gateways/n1/192.0.2.5"),
        undefined,
        "given up: one holder per address",
      );
      assert.deepEqual(
        await n1.reserve(["infra/b", "infra/c", "infra/d"]),
        ["192.0.2.2"],
        "and another taken",
      );
    } finally {
      await n1.stop();
      raw.close();
      await kv.close();
      await etcd.stop();
    }
  },
);

test(
  "least privilege (etcd auth on): an older agent cannot write lb/alloc/ at all; a new agent reserves without a mirror and is not refused; a role granted lb/alloc/ip/ by hand (session 17's hint) gets the mirror",
  { skip },
  async () => {
    const ae = await startAuthEtcd({ nodes: ["n1", "n2"] });
    let txns = 0;
    const kv = ae.node("n1");
    const inner = new ClusterResourceStore(kv, kv);
    const counted: Store = {
      get: (k) => inner.get(k),
      list: (p) => inner.list(p),
      put: (k, v) => inner.put(k, v),
      delete: (k) => inner.delete(k),
      txn: (r) => (txns++, inner.txn(r)),
      watch: (p, rev, cb, o) => inner.watch(p, rev, cb, o),
      revision: () => inner.revision(),
      close: () => inner.close(),
    };
    const n1 = node(kv, "n1", [], counted);
    try {
      const n2 = new ClusterResourceStore(ae.node("n2"), ae.node("n2"));
      await assert.rejects(oldReserve(n2, "192.0.2.2", "gateway n2 e19-n2-gateway infra/b"), /permission denied/i, "an older agent's Gateway"); // prettier-ignore
      await assert.rejects(oldReserve(n2, "192.0.2.2", "default/web"), /permission denied/i, "an older agent's Service"); // prettier-ignore
      assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.2"]);
      assert.equal(n1.refused, undefined, "not refused for the mirror");
      const store = new ClusterResourceStore(ae.admin(), ae.admin());
      assert.equal((await store.get("lb/gateways/n1/192.0.2.2"))?.value, "gateway n1 e19-n1-gateway infra/a");
      assert.equal(await store.get(`${OLD}192.0.2.2`), undefined, "no mirror: the role may not write it");
      // Learned once: the next reservation is one transaction, the release too.
      const before = txns;
      assert.deepEqual(await n1.reserve(["infra/a", "infra/b"]), ["192.0.2.3"]);
      assert.equal(txns - before, 1, "no transaction tried with the mirror again");
      assert.deepEqual(await n1.release(["infra/b"]), ["192.0.2.2"]);
      assert.equal(await store.get("lb/gateways/n1/192.0.2.2"), undefined);

      // A role granted lb/alloc/ip/ by hand, as session 17's refusal told operators to: an older agent
      // of that node may write there, and so may the new one, which then mirrors.
      const r = ae.root();
      try {
        await r.role("membrane-node-n2").grant({ permission: "Readwrite", range: Range.prefix("membrane/cluster/lb/alloc/ip/") }); // prettier-ignore
      } finally {
        r.close();
      }
      const n2new = node(ae.node("n2"), "n2");
      try {
        assert.deepEqual(await n2new.reserve(["infra/b"]), ["192.0.2.2"]);
        assert.equal((await store.get(`${OLD}192.0.2.2`))?.value, "gateway n2 e19-n2-gateway infra/b");
        assert.equal(await oldReserve(n2, "192.0.2.2", "gateway n2 e19-n2-gateway infra/x"), false, "an older agent of n2 sees it taken"); // prettier-ignore
      } finally {
        await n2new.stop();
      }
    } finally {
      await n1.stop();
      await ae.stop();
    }
  },
);
