// Many nodes registering one after another while a node's cluster ipcache runs (as the cluster
// benchmark's simulated nodes do): each writes its pod CIDR claim, its record, then its entries,
// back to back; every entry of every node must reach the agent, whatever order the watches of
// nodes/, podcidrs/ and ipcache/ deliver them in. The agent here is a recording sink.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import type { ClusterContext } from "../../src/cluster/context.js";
import { ipcachePrefix, nodeKey, podCidrKey, type NodeRecordV1 } from "../../src/cluster/keys.js";
import { startClusterIpcache } from "../../src/cluster/start-ipcache.js";
import type { RemoteEndpointSpec } from "../../src/policy/query.js";
import type { TxnOp } from "../../src/store/store.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { until } from "../support/until.js";

class Sink {
  readonly remote = new Map<string, RemoteEndpointSpec>();
  readonly remoteEndpoints = {
    upsert: async (es: readonly RemoteEndpointSpec[]) => {
      // An agent takes a while per request (one enforce): let more watch events arrive meanwhile.
      await new Promise((r) => setTimeout(r, 20));
      for (const e of es) this.remote.set(e.ip, e);
    },
    delete: async (ips: readonly string[]) => {
      for (const ip of ips) this.remote.delete(ip);
    },
    list: () => [...this.remote.values()],
  };
  listEndpoints = (): [] => [];
  setNodeAddress = async (): Promise<void> => {
    await new Promise((r) => setTimeout(r, 5));
  };
  deleteNodeAddress = async (): Promise<void> => undefined;
}

describe("cluster ipcache with many nodes registering", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  before(async () => void (etcd = await startEtcd()));
  after(async () => etcd?.stop());

  test("20 nodes registering back to back (claim, record, entries): every entry of every node arrives", async () => {
    const kv = etcd.store({ prefix: "many/" });
    const writer = etcd.store({ prefix: "many/" });
    const lease = await kv.grantLease(30, () => undefined);
    const sink = new Sink();
    const ctx: ClusterContext = {
      kv,
      lease,
      node: "real",
      nodeIp: { ipv4: "172.30.0.1" },
      logger: pino({ level: "silent" }),
    };
    const sync = await startClusterIpcache(ctx, { agent: sink, endpointsRevision: () => 0 });
    try {
      const nodes = 20;
      const per = 20;
      for (let n = 0; n < nodes; n++) {
        const name = `sim${n}`;
        const cidr = `10.64.${n}.0/24`;
        const rec: NodeRecordV1 = {
          v: 1,
          name,
          addresses: { ipv4: `172.30.0.${100 + n}` },
          podCidrs: [cidr],
          labels: {},
          routing: "native",
          bootId: "b",
          startedAt: new Date().toISOString(),
        };
        await writer.put(podCidrKey(name), JSON.stringify({ v: 1, ipv4: cidr, allocated: false }));
        await writer.txn({
          compare: [],
          ops: [{ type: "put", key: nodeKey(name), value: JSON.stringify(rec), lease: lease.id }],
        });
        const ops: TxnOp[] = [];
        for (let j = 0; j < per; j++) {
          const value = JSON.stringify({
            v: 1,
            identity: 1000,
            namespace: "default",
            name: `p${j}`,
            labels: { app: "x" },
          });
          ops.push({ type: "put", key: `${ipcachePrefix(name)}10.64.${n}.${j + 2}`, value, lease: lease.id });
        }
        await writer.txn({ compare: [], ops });
      }
      await until(`all ${nodes * per} entries arrive`, () => sink.remote.size === nodes * per);
      assert.equal(sink.remote.size, nodes * per);
    } finally {
      await sync.stop();
      await lease.revoke().catch(() => undefined);
      await writer.close();
      await kv.close();
    }
  });
});
