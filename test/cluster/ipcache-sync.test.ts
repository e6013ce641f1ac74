// The cluster ipcache through a real etcd: what one node publishes (on its lease, in txns of <= 128
// ops) reaches the other's agent as remote endpoints and node addresses; entries outside the
// publisher's pod CIDRs are ignored; relabel/delete/lease expiry propagate. The agent here is a
// recording sink (the two-agent e2e test drives real agents and packets).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import type { ClusterContext } from "../../src/cluster/context.js";
import { ipcachePrefix, nodeKey, podCidrKey, type NodeRecordV1 } from "../../src/cluster/keys.js";
import type { LocalEndpoint } from "../../src/cluster/ipcache-publish.js";
import { startClusterIpcache, type ClusterIpcache } from "../../src/cluster/start-ipcache.js";
import type { RemoteEndpointSpec } from "../../src/policy/query.js";
import type { EtcdStore, StoreLease } from "../../src/store/etcd.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { until } from "../support/until.js";

const logs: Record<string, unknown>[] = [];
const logger = pino(
  { level: "info" },
  { write: (l: string) => void logs.push(JSON.parse(l) as Record<string, unknown>) },
);

class FakeAgent {
  readonly remote = new Map<string, RemoteEndpointSpec>();
  readonly nodeAddrs = new Map<string, string>();
  endpoints: LocalEndpoint[] = [];
  rev = 0;
  upserts = 0;
  readonly remoteEndpoints = {
    upsert: async (es: readonly RemoteEndpointSpec[]) => {
      this.upserts++;
      for (const e of es) this.remote.set(e.ip, e);
    },
    delete: async (ips: readonly string[]) => {
      for (const ip of ips) this.remote.delete(ip);
    },
    list: () => [...this.remote.values()],
  };
  listEndpoints = (): LocalEndpoint[] => this.endpoints;
  setNodeAddress = async (ip: string, kind: string): Promise<void> => void this.nodeAddrs.set(ip, kind);
  deleteNodeAddress = async (ip: string): Promise<void> => void this.nodeAddrs.delete(ip);
}

interface TestNode {
  readonly kv: EtcdStore;
  readonly lease: StoreLease;
  readonly agent: FakeAgent;
  readonly ctx: ClusterContext;
  sync?: ClusterIpcache;
}

describe("cluster ipcache through etcd", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  let n = 0;
  before(async () => void (etcd = await startEtcd()));
  after(async () => etcd?.stop());

  /** A node: its registry record and pod CIDR claim on its lease, its sync started. */
  async function node(prefix: string, name: string, ip: string, podCidr: string): Promise<TestNode> {
    const kv = etcd.store({ prefix: prefix });
    const lease = await kv.grantLease(5, () => undefined);
    const rec: NodeRecordV1 = {
      v: 1,
      name,
      addresses: { ipv4: ip },
      podCidrs: [podCidr],
      labels: {},
      routing: "native",
      bootId: "b",
      startedAt: new Date().toISOString(),
    };
    await kv.put(podCidrKey(name), JSON.stringify({ v: 1, ipv4: podCidr, allocated: false }));
    await kv.txn({
      compare: [],
      ops: [{ type: "put", key: nodeKey(name), value: JSON.stringify(rec), lease: lease.id }],
    });
    const agent = new FakeAgent();
    const ctx: ClusterContext = { kv, lease, node: name, nodeIp: { ipv4: ip }, logger };
    return { kv, lease, agent, ctx };
  }

  const start = async (t: TestNode): Promise<ClusterIpcache> =>
    (t.sync = await startClusterIpcache(t.ctx, {
      agent: t.agent,
      endpointsRevision: () => t.agent.rev,
      pollMs: 20,
    }));

  const ep = (name: string, ipv4: string, labels: Record<string, string>): LocalEndpoint => ({
    namespace: "default",
    name,
    identity: 1000,
    labels,
    ipv4,
  });

  test("peers' endpoints arrive with their labels; node addresses are remote-node / host; changes and lease expiry propagate", async () => {
    const prefix = `membrane-rt${n++}/`;
    const a = await node(prefix, "node-a", "172.30.0.1", "10.240.0.0/24");
    const b = await node(prefix, "node-b", "172.30.0.2", "10.241.0.0/24");
    try {
      b.agent.endpoints = [ep("server", "10.241.0.5", { app: "server" })];
      await start(a);
      await start(b);
      await until("a knows b's server", () => a.agent.remote.has("10.241.0.5"));
      assert.deepEqual(a.agent.remote.get("10.241.0.5")?.labels, { app: "server" });
      assert.equal(a.agent.nodeAddrs.get("172.30.0.2"), "remote-node");
      assert.equal(a.agent.nodeAddrs.get("172.30.0.1"), "host");
      assert.equal(b.agent.remote.size, 0, "a node does not import its own endpoints");

      // B relabels its endpoint and gains one; A follows.
      b.agent.endpoints = [ep("server", "10.241.0.5", { app: "web" }), ep("db", "10.241.0.6", { app: "db" })];
      b.agent.rev++;
      await until(
        "relabel and create seen",
        () => a.agent.remote.get("10.241.0.5")?.labels["app"] === "web" && a.agent.remote.has("10.241.0.6"),
      );

      // B writes an entry outside its pod CIDR (A's pod address): ignored, logged.
      await b.kv.put(
        `${ipcachePrefix("node-b")}10.240.0.9`,
        JSON.stringify({ v: 1, identity: 1, namespace: "default", name: "x", labels: {} }),
      );
      // ... and one inside its CIDR, written straight to the store (as a hostile node could): counted.
      await b.kv.put(
        `${ipcachePrefix("node-b")}10.241.0.77`,
        JSON.stringify({ v: 1, identity: 1, namespace: "default", name: "y", labels: { app: "y" } }),
      );
      await until("the valid one arrives", () => a.agent.remote.has("10.241.0.77"));
      assert.equal(a.agent.remote.has("10.240.0.9"), false);
      assert.ok(logs.some((l) => String(l["why"]).includes("outside the pod CIDRs node node-b owns")));

      // B deletes its endpoint: gone on A.
      b.agent.endpoints = [ep("db", "10.241.0.6", { app: "db" })];
      b.agent.rev++;
      await until("delete seen", () => !a.agent.remote.has("10.241.0.5"));

      // B's lease ends (the node died): etcd deletes its entries and record; A forgets them and its address.
      await b.sync?.stop();
      await b.lease.revoke();
      await until("b's endpoints gone on a", () => a.agent.remote.size === 0);
      await until("b's address gone on a", () => !a.agent.nodeAddrs.has("172.30.0.2"));
      assert.equal(a.agent.nodeAddrs.get("172.30.0.1"), "host");
    } finally {
      await a.sync?.stop();
      await b.sync?.stop();
      a.lease.release();
      await a.kv.close();
      await b.kv.close();
    }
  });

  test("a node that claims a pod CIDR another node claimed first cannot publish its pods (nor get routes to it)", async () => {
    const prefix = `membrane-rt${n++}/`;
    const a = await node(prefix, "node-a", "172.30.0.1", "10.244.0.0/24");
    const b = await node(prefix, "node-b", "172.30.0.2", "10.245.0.0/24");
    // node-c claims b's CIDR (later than b): its record lists it, its entry sits inside it.
    const c = await node(prefix, "node-c", "172.30.0.3", "10.245.0.0/25");
    try {
      b.agent.endpoints = [ep("real", "10.245.0.5", { app: "real" })];
      c.agent.endpoints = [ep("fake", "10.245.0.6", { app: "fake" })];
      await start(b);
      await start(c);
      await start(a);
      await until("b's pod arrives", () => a.agent.remote.has("10.245.0.5"));
      await a.sync?.receiver.trigger();
      assert.equal(a.agent.remote.has("10.245.0.6"), false, "c's entry in b's CIDR is ignored");
      assert.deepEqual(a.sync?.view.snapshot.owned.get("node-c"), []);
      assert.ok(logs.some((l) => String(l["why"]).includes("outside the pod CIDRs node node-c owns")));
      assert.equal(a.agent.nodeAddrs.get("172.30.0.3"), "remote-node", "c is still a node");
    } finally {
      for (const t of [a, b, c]) {
        await t.sync?.stop();
        t.lease.release();
        await t.kv.close();
      }
    }
  });

  test("entries written before their node's record count once the node registers", async () => {
    const prefix = `membrane-rt${n++}/`;
    const a = await node(prefix, "node-a", "172.30.0.1", "10.246.0.0/24");
    try {
      await start(a);
      const kv = etcd.store({ prefix: prefix });
      const entry = { v: 1, identity: 1, namespace: "default", name: "early", labels: { app: "early" } };
      await kv.put(`${ipcachePrefix("node-e")}10.247.0.5`, JSON.stringify(entry));
      await a.sync?.receiver.trigger();
      assert.equal(a.agent.remote.has("10.247.0.5"), false, "no record yet: not counted");
      const e = await node(prefix, "node-e", "172.30.0.5", "10.247.0.0/24");
      await until("counted once registered", () => a.agent.remote.has("10.247.0.5"));
      e.lease.release();
      await e.kv.close();
      await kv.close();
    } finally {
      await a.sync?.stop();
      a.lease.release();
      await a.kv.close();
    }
  });

  test("the node's lease lost and re-granted: its entries are put again on the new lease", async () => {
    const prefix = `membrane-rt${n++}/`;
    const b = await node(prefix, "node-b", "172.30.0.2", "10.248.0.0/24");
    const renewed: ((l: StoreLease) => Promise<void> | void)[] = [];
    const t: TestNode = {
      ...b,
      ctx: { ...b.ctx, onLeaseRenewed: (cb) => (renewed.push(cb), () => undefined) },
    };
    try {
      t.agent.endpoints = [ep("x", "10.248.0.7", { app: "x" })];
      await start(t);
      const key = `${ipcachePrefix("node-b")}10.248.0.7`;
      assert.ok(await b.kv.get(key));
      await b.lease.revoke(); // lost: etcd deletes the node's keys
      assert.equal(await b.kv.get(key), undefined);
      const lease2 = await b.kv.grantLease(5, () => undefined);
      for (const cb of renewed) await cb(lease2);
      assert.ok(await b.kv.get(key), "put again");
      await lease2.revoke();
      assert.equal(await b.kv.get(key), undefined, "on the new lease");
    } finally {
      await t.sync?.stop();
      await b.kv.close();
    }
  });

  test("publishing 300 endpoints takes 3 transactions of <= 128 ops; a restarted node republishes on its new lease and its peer changes nothing", async () => {
    const prefix = `membrane-rt${n++}/`;
    const a = await node(prefix, "node-a", "172.30.0.1", "10.242.0.0/23");
    const b = await node(prefix, "node-b", "172.30.0.2", "10.243.0.0/23");
    try {
      b.agent.endpoints = Array.from({ length: 300 }, (_, i) =>
        ep(`e${i}`, `10.243.${i >> 8}.${(i & 255) + (i >> 8 === 0 ? 0 : 0)}`, { app: `a${i % 7}` }),
      );
      await start(b);
      assert.equal(b.sync?.publisher.txns, 3);
      assert.equal((await b.kv.list(ipcachePrefix("node-b"))).kvs.length, 300);
      await start(a);
      await until("a has all 300", () => a.agent.remote.size === 300);
      const upsertsBefore = a.agent.upserts;

      // B restarts: a new lease; the entries are put again on it; A sees puts of equal values.
      await b.sync?.stop();
      const lease2 = await b.kv.grantLease(5, () => undefined);
      const b2: TestNode = { ...b, lease: lease2, ctx: { ...b.ctx, lease: lease2 } };
      // The registry (H3's part) puts the node's record on the new lease too.
      const rec = await b.kv.get(nodeKey("node-b"));
      await b.kv.txn({
        compare: [],
        ops: [{ type: "put", key: nodeKey("node-b"), value: rec?.value ?? "", lease: lease2.id }],
      });
      await start(b2);
      b.lease.release();
      await b.lease.revoke().catch(() => undefined); // the old lease ends: nothing may vanish
      await b2.sync?.receiver.trigger();
      await a.sync?.receiver.trigger();
      assert.equal(
        (await b.kv.list(ipcachePrefix("node-b"))).kvs.length,
        300,
        "entries live on the new lease",
      );
      assert.equal(a.agent.remote.size, 300);
      assert.equal(a.agent.upserts, upsertsBefore, "equal values change nothing on the peer");
      await b2.sync?.stop();
      lease2.release();
    } finally {
      await a.sync?.stop();
      a.lease.release();
      await a.kv.close();
      await b.kv.close();
    }
  });
});
