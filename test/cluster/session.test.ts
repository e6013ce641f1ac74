// Cluster session + node registry (src/cluster/session.ts, registry.ts) against a real etcd:
// nodes see each other; a node whose lease expires leaves every registry; a lost lease is
// re-granted and the node record put again; an unreachable etcd is CLUSTER_UNAVAILABLE at start.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { pino } from "pino";
import { MembraneError } from "../../src/errors.js";
import { ClusterSession, type ClusterOptions } from "../../src/cluster/session.js";
import type { NodeChange } from "../../src/cluster/registry.js";
import { freePort, skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";
import { until } from "../support/until.js";

const logger = pino({ level: "silent" });

describe("cluster session and node registry", { skip: skipWithoutEtcd() }, () => {
  let etcd: EtcdHandle;
  let n = 0;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd.stop();
  });
  const opts = (prefix: string, node: string, extra: Partial<ClusterOptions> = {}): ClusterOptions => ({
    endpoints: [etcd.endpoint],
    node,
    nodeIp: { ipv4: `192.0.2.${node.length}` },
    labels: { zone: node },
    podCidrs: { clusterCidr: { ipv4: "10.50.0.0/16" } },
    leaseTtlSeconds: 2,
    tunnel: "native",
    prefix,
    ...extra,
  });

  it("nodes register and see each other; a node whose lease expires is gone from every registry", async () => {
    const prefix = `reg-${n++}/`;
    const a = await ClusterSession.open(opts(prefix, "a"), logger);
    const b = await ClusterSession.open(opts(prefix, "bb", { tunnel: "vxlan" }), logger);
    try {
      const ra = await a.start();
      const changes: NodeChange[] = [];
      ra.on((c) => changes.push(c));
      const rb = await b.start();
      await until("both nodes in both registries", () => ra.alive("bb") && rb.alive("a"));
      const seen = ra.nodes().get("bb");
      assert.equal(seen?.routing, "vxlan");
      assert.deepEqual(seen?.addresses, { ipv4: "192.0.2.2" });
      assert.deepEqual(seen?.labels, { zone: "bb" });
      assert.deepEqual(seen?.podCidrs, [b.podCidrs.ipv4]);
      assert.notEqual(a.podCidrs.ipv4, b.podCidrs.ipv4);
      assert.ok(changes.some((c) => c.type === "upsert" && c.name === "bb"));
      // b stops without revoking: its record lives until the TTL, then leaves a's registry.
      await b.close();
      await until("b to leave a's registry after its lease expired", () => !ra.alive("bb"));
      assert.ok(changes.some((c) => c.type === "delete" && c.name === "bb"));
      assert.ok(ra.alive("a"), "a's own lease is kept alive");
      const st = a.status();
      assert.equal(st.lease.state, "held");
      assert.equal(st.store.connected, true);
      assert.equal(st.nodesAlive, 1);
    } finally {
      await a.close({ revoke: true });
      await b.close();
    }
  });

  it("a lost lease is re-granted and the node record put again (and renewal callbacks run)", async () => {
    const prefix = `reg-${n++}/`;
    const a = await ClusterSession.open(opts(prefix, "a"), logger);
    const admin = etcd.store({ prefix });
    try {
      await a.start();
      const renewed: string[] = [];
      a.ctx.onLeaseRenewed?.((l) => void renewed.push(l.id));
      const first = a.ctx.lease.id;
      // Another party revokes the node's lease (as an expiry would): its keys vanish.
      await admin.close();
      const raw = etcd.store({ prefix });
      // etcd3's lease API through a second client: revoke by id.
      const { Etcd3 } = await import("etcd3");
      const c = new Etcd3({ hosts: [etcd.endpoint] });
      try {
        await c.leaseClient.leaseRevoke({ ID: first });
      } finally {
        c.close();
      }
      await until("the lease to be re-granted", async () => renewed.length === 1);
      assert.notEqual(a.ctx.lease.id, first);
      await until(
        "the node record to be put again",
        async () => (await raw.get("cluster/nodes/a")) !== undefined,
      );
      const st = a.status();
      assert.equal(st.lease.state, "held");
      assert.equal(st.lease.renewals, 1);
      assert.ok(st.lease.lastLostAt);
      await raw.close();
    } finally {
      await a.close({ revoke: true });
    }
  });

  it("an unreachable cluster store is CLUSTER_UNAVAILABLE with a hint, naming the endpoint", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    await assert.rejects(
      ClusterSession.open({ ...opts("x/", "a"), endpoints: [url] }, logger),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "CLUSTER_UNAVAILABLE" &&
        e.message.includes(url) &&
        /etcd runs/.test(e.hint ?? ""),
    );
  });
});
