// The first cross-node traffic test: two real agents, each in its own node namespace joined to an
// underlay bridge (a namespace of its own), both on one etcd (loopback, started here); one server on
// node B, a client and an intruder on node A; a policy lets the client reach the server on TCP/80
// and nothing else. Packets between nodes are judged by the sender's identity from the cluster
// ipcache, with native routing and with VXLAN. The node registry records are written here (H3's
// registry writes them in cluster mode).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import type { ClusterContext } from "../../src/cluster/context.js";
import { nodeKey, podCidrKey, type NodeRecordV1 } from "../../src/cluster/keys.js";
import { readPeerState } from "../../src/datapath/peer-routes.js";
import { startClusterIpcache, type ClusterIpcache } from "../../src/cluster/start-ipcache.js";
import type { StoreLease } from "../../src/store/etcd.js";
import { AgentLab, rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import { uniquePrefix } from "../datapath/harness.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import { Underlay } from "../../src/lab/underlay.js";
import { until } from "../support/until.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();

for (const mode of ["native", "vxlan"] as const) {
  describe(`two nodes, one etcd (${mode}, root)`, { skip }, () => {
    test(`${mode}: client on node A reaches the server on node B; the intruder is dropped by its identity; A restarts without a change; a deleted pod and a dead node leave the ipcache and routes`, async () => {
      const etcd = await startEtcd();
      const u = await Underlay.create(uniquePrefix(mode === "native" ? "rte" : "rtx"));
      const labs = [
        await AgentLab.prepare(mode === "native" ? "rtea" : "rtxa", { podCidr4: "10.250.0.0/24" }),
        await AgentLab.prepare(mode === "native" ? "rteb" : "rtxb", { podCidr4: "10.251.0.0/24" }),
      ] as const;
      const syncs: (ClusterIpcache | undefined)[] = [];
      const leases: StoreLease[] = [];
      const kvs = labs.map(() => etcd.store({ prefix: "membrane/" }));
      const ctxs: ClusterContext[] = [];
      /** What the agent's wiring does in cluster mode (H3 connects it to --cluster-store). */
      const startSync = (i: number): Promise<ClusterIpcache> => {
        const lab = labs[i] as AgentLab;
        const agent = lab.agent;
        return startClusterIpcache(ctxs[i] as ClusterContext, {
          agent,
          endpointsRevision: () =>
            agent.status().controllers.find((c) => c.name === "endpoints")?.desired ?? 0,
          routing: { netns: lab.node, mode },
        });
      };
      try {
        for (const [i, lab] of labs.entries()) {
          const n = await u.node(i + 1, { netns: lab.node, podCidr: lab.options.podCidr4 });
          await lab.startAgent();
          const kv = kvs[i];
          if (!kv) throw new Error("no client");
          const name = `node-${"ab"[i]}`;
          const lease = await kv.grantLease(5, () => undefined);
          leases.push(lease);
          const rec: NodeRecordV1 = {
            v: 1,
            name,
            addresses: { ipv4: n.ip },
            podCidrs: [n.podCidr],
            labels: {},
            routing: mode,
            bootId: lab.prefix,
            startedAt: new Date().toISOString(),
          };
          await kv.put(podCidrKey(name), JSON.stringify({ v: 1, ipv4: n.podCidr, allocated: false }));
          await kv.txn({
            compare: [],
            ops: [{ type: "put", key: nodeKey(name), value: JSON.stringify(rec), lease: lease.id }],
          });
          ctxs.push({
            kv,
            lease,
            node: name,
            nodeIp: { ipv4: n.ip },
            logger: pino({ level: "warn" }),
          });
          syncs[i] = await startSync(i);
          const agent = lab.agent;
          await agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
        }
        const [a, b] = labs;
        const server = await b.endpoint("server", { app: "server" }, { tcp: [80, 8080] });
        const client = await a.endpoint("client", { app: "client" });
        const intruder = await a.endpoint("intruder", { app: "intruder" });
        const known = (lab: AgentLab, ip: string): boolean =>
          lab.agent.remoteEndpoints.list().some((r) => r.ip === ip);
        await until("B knows A's pods", () => known(b, client.ip) && known(b, intruder.ip));
        await until("A knows B's server", () => known(a, server.ip));
        // Propagation is "enforced" once the remote endpoint's request returned (one enforce per request).
        assert.equal(await client.probe.tcp(server.ip, 80, 2000), "ok", "client -> server:80 across nodes");
        assert.notEqual(await intruder.probe.tcp(server.ip, 80, T), "ok", "intruder -> server:80 dropped");
        assert.notEqual(await client.probe.tcp(server.ip, 8080, T), "ok", "client -> server:8080 dropped");
        const ids = b.agent.remoteEndpoints.list();
        assert.deepEqual(
          ids.filter((r) => r.ip === client.ip).map((r) => r.labels),
          [{ app: "client" }],
        );
        assert.deepEqual(await b.agent.datapathDiff(), []);
        // A node's own address is host (1) on it and remote-node (6) on the other.
        const idOf = (lab: AgentLab, ip: string): number | undefined =>
          lab.agent.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;
        const [ipA, ipB] = u.nodes.map((n) => n.ip);
        await until(
          "node addresses in both ipcaches",
          () => idOf(b, ipA ?? "") === 6 && idOf(a, ipB ?? "") === 6,
        );
        assert.equal(idOf(a, ipA ?? ""), 1);
        assert.equal(idOf(b, ipB ?? ""), 1);
        // The intruder is dropped as itself (its labels' identity), not as an unknown address.
        assert.deepEqual(
          ids.filter((r) => r.ip === intruder.ip).map((r) => r.labels),
          [{ app: "intruder" }],
        );

        // A's agent restarts: its routes and kernel tables are adopted as they are (nothing runs), traffic lives on.
        await syncs[0]?.stop();
        await a.stopAgent();
        await a.startAgent();
        syncs[0] = await startSync(0);
        assert.equal(syncs[0].routing?.changes, 0, "a restarted agent changes no route");
        assert.deepEqual(await a.agent.datapathDiff(), []);
        assert.ok(known(a, server.ip));
        assert.equal(
          await client.probe.tcp(server.ip, 80, 2000),
          "ok",
          "client -> server:80 after A's restart",
        );

        // The client pod is deleted on A: it leaves B's ipcache, and its address no longer counts as client.
        await a.agent.deleteEndpointRequest("default", "client");
        await until("B forgot the client", () => !known(b, client.ip));

        // Node B dies (its lease ends): A forgets its pods, its address and its routes.
        await syncs[1]?.stop();
        await leases[1]?.revoke();
        await until("A forgot B's server", () => !known(a, server.ip));
        await until("A forgot B's address", () => idOf(a, ipB ?? "") === undefined);
        await syncs[0]?.routing?.trigger();
        const routes = await readPeerState(a.node, ipA ?? "");
        assert.equal(routes.routes.size, 0, "no route to a node that left");
      } finally {
        for (const s of syncs) await s?.stop().catch(() => undefined);
        for (const l of leases) l.release();
        for (const kv of kvs) await kv.close();
        for (const lab of labs) await lab.destroy();
        await u.destroy();
        await etcd.stop();
      }
    });
  });
}
