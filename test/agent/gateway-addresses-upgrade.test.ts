// Upgrading Gateways' addresses to per-node keys (agent/gateway-addresses.ts, real etcd): agents
// before reserved them in cluster mode under the Services' keys (lb/alloc/ip/<address>, holder
// `gateway <node> ...`). At load, a node moves its own to lb/gateways/<node>/ and keeps the address
// (the old key stays as the mirror older agents read, gateway-legacy.ts: gateway-addresses-mixed);
// another node's are not touched. A role that may not delete them (auth on since) leaves them: the
// log says the one command that frees the address, and the Gateway gets another.
import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { GatewayAddresses } from "../../src/agent/gateway-addresses.js";
import { ClusterResourceStore } from "../../src/cluster/resource-store.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import type { EtcdStore } from "../../src/store/etcd.js";
import { startAuthEtcd } from "../support/etcd-auth.js";

const POOL = { loadBalancerPool: "192.0.2.0/29" }; // .2 to .6
const OLD = "lb/alloc/ip/";

function node(kv: EtcdStore, name: string, log: string[] = []): GatewayAddresses {
  return new GatewayAddresses({
    store: new ClusterResourceStore(kv, kv),
    logger: pino({ level: "error" }, { write: (line: string) => void log.push(line) }),
    netns: `e18-${name}-gateway`,
    pool: POOL,
    cluster: {
      node: name,
      storePrefix: kv.prefix,
      grantLease: (t, l) => kv.grantLease(t, l),
      leaseTtlSeconds: 30,
    },
  });
}

test(
  "an older agent's reservations of this node are moved to its own keys, the addresses kept; another node's are left",
  { skip: skipWithoutEtcd() },
  async () => {
    const etcd = await startEtcd();
    const kv = etcd.store();
    const n1 = node(kv, "n1");
    try {
      const store = new ClusterResourceStore(kv, kv);
      await store.put(`${OLD}192.0.2.2`, "gateway n1 e18-n1-gateway infra/a");
      await store.put(`${OLD}192.0.2.3`, "gateway n2 e18-n2-gateway infra/b");
      // Two of one family for one Gateway (one already moved): the older one is only released.
      await store.put("lb/gateways/n1/192.0.2.4", "gateway n1 e18-n1-gateway infra/c");
      await store.put(`${OLD}192.0.2.5`, "gateway n1 e18-n1-gateway infra/c");
      await n1.load();
      assert.deepEqual(n1.assigned(["infra/a", "infra/c"]), {
        "infra/a": ["192.0.2.2"],
        "infra/c": ["192.0.2.4"],
      });
      assert.equal((await store.get("lb/gateways/n1/192.0.2.2"))?.value, "gateway n1 e18-n1-gateway infra/a");
      assert.equal((await store.get(`${OLD}192.0.2.2`))?.value, "gateway n1 e18-n1-gateway infra/a", "kept as the mirror older agents read"); // prettier-ignore
      assert.equal(await store.get(`${OLD}192.0.2.5`), undefined, "released");
      assert.equal((await store.get(`${OLD}192.0.2.3`))?.value, "gateway n2 e18-n2-gateway infra/b", "n2's, untouched"); // prettier-ignore
      assert.deepEqual(await n1.reserve(["infra/a", "infra/c"]), [], "nothing more to reserve");
    } finally {
      await n1.stop();
      await kv.close();
      await etcd.stop();
    }
  },
);

test(
  "under least privilege an older reservation cannot be moved: the log gives the command that frees it, the Gateway gets another address",
  { skip: skipWithoutEtcd() },
  async () => {
    const ae = await startAuthEtcd({
      nodes: ["n1"],
      before: (r) =>
        r.put("membrane/cluster/lb/alloc/ip/192.0.2.2").value("gateway n1 e18-n1-gateway infra/a").exec(),
    });
    const kv = ae.node("n1");
    const adm = ae.admin();
    const log: string[] = [];
    const n1 = node(kv, "n1", log);
    try {
      assert.deepEqual(await n1.reserve(["infra/a"]), ["192.0.2.3"]);
      const line = log
        .map((l) => (JSON.parse(l) as { msg: string }).msg)
        .find((m) => m.includes("192.0.2.2"));
      assert.match(line ?? "", /etcd role membrane-node-n1 may not delete it/);
      const cmd = /free this one with: etcdctl --user (\S+) del (\S+)$/.exec(line ?? "");
      assert.ok(cmd, `the command in the log: ${line}`);
      assert.equal(cmd[2], "membrane/cluster/lb/alloc/ip/192.0.2.2");
      assert.equal(
        (await kv.get("cluster/lb/alloc/ip/192.0.2.2"))?.value,
        "gateway n1 e18-n1-gateway infra/a",
      );
      // The command as the log says (that user is the admin role, which may delete Services' reservations).
      assert.equal(cmd[1], "membrane-admin");
      await adm.delete("cluster/lb/alloc/ip/192.0.2.2");
      assert.equal(await kv.get("cluster/lb/alloc/ip/192.0.2.2"), undefined);
    } finally {
      await n1.stop();
      await ae.stop();
    }
  },
);
