// The host firewall across nodes (issue 11 item 5, Cilium's host policies), with real packets: two
// agents in their node namespaces on an underlay and one etcd (native routing); node "web" carries
// role=web, node "db" role=db (their registry records' labels, and each agent's own nodeLabels). A
// CCNP selecting role=db lets only nodes labelled role=web reach its TCP 22: web -> db:22 allowed, :23
// dropped, pods dropped, the web node (not selected) untouched, pod traffic between the nodes never
// judged; then an egress host rule; removing the policies reopens everything.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import type { ClusterContext } from "../../src/cluster/context.js";
import { nodeKey, podCidrKey, type NodeRecordV1 } from "../../src/cluster/keys.js";
import { startClusterIpcache, type ClusterIpcache } from "../../src/cluster/start-ipcache.js";
import { LOCAL_ID_MIN } from "../../src/identity/reserved.js";
import type { StoreLease } from "../../src/store/etcd.js";
import { AgentLab, rootSkipReason, T } from "../agent/e2e/harness.js";
import { uniquePrefix } from "../datapath/harness.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import { Underlay } from "../../src/lab/underlay.js";
import { until } from "../support/until.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();

const INGRESS = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: db-ssh}
spec:
  nodeSelector: {matchLabels: {role: db}}
  ingress:
  - fromNodes: [{matchLabels: {role: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;
const EGRESS = `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: db-out}
spec:
  nodeSelector: {matchLabels: {role: db}}
  egress:
  - toNodes: [{matchLabels: {role: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;

describe("host firewall on two nodes, one etcd (root)", { skip }, () => {
  test("a CCNP for role=db nodes allows TCP 22 from role=web nodes only; egress host rules; removal reopens", async () => {
    const etcd = await startEtcd();
    const u = await Underlay.create(uniquePrefix("hfu"));
    const roles = ["web", "db"] as const;
    const labs = [
      await AgentLab.prepare("hfw", { podCidr4: "10.252.0.0/24", engine: { nodeLabels: { role: "web" } } }),
      await AgentLab.prepare("hfd", { podCidr4: "10.253.0.0/24", engine: { nodeLabels: { role: "db" } } }),
    ] as const;
    const syncs: ClusterIpcache[] = [];
    const leases: StoreLease[] = [];
    const kvs = labs.map(() => etcd.store({ prefix: "membrane/" }));
    try {
      for (const [i, lab] of labs.entries()) {
        const n = await u.node(i + 1, { netns: lab.node, podCidr: lab.options.podCidr4 });
        await lab.startAgent();
        const kv = kvs[i];
        if (!kv) throw new Error("no client");
        const name = `node-${roles[i]}`;
        const lease = await kv.grantLease(5, () => undefined);
        leases.push(lease);
        const rec: NodeRecordV1 = {
          v: 1,
          name,
          addresses: { ipv4: n.ip },
          podCidrs: [n.podCidr],
          labels: { role: roles[i] as string },
          routing: "native",
          bootId: lab.prefix,
          startedAt: new Date().toISOString(),
        };
        await kv.put(podCidrKey(name), JSON.stringify({ v: 1, ipv4: n.podCidr, allocated: false }));
        await kv.txn({
          compare: [],
          ops: [{ type: "put", key: nodeKey(name), value: JSON.stringify(rec), lease: lease.id }],
        });
        const ctx: ClusterContext = {
          kv,
          lease,
          node: name,
          nodeIp: { ipv4: n.ip },
          logger: pino({ level: "warn" }),
        };
        const agent = lab.agent;
        syncs.push(
          await startClusterIpcache(ctx, {
            agent,
            endpointsRevision: () =>
              agent.status().controllers.find((c) => c.name === "endpoints")?.desired ?? 0,
            routing: { netns: lab.node, mode: "native" },
          }),
        );
      }
      const [web, db] = labs;
      const [ipWeb = "", ipDb = ""] = u.nodes.map((n) => n.ip);
      const nodeWeb = web.probeIn(web.node);
      const nodeDb = db.probeIn(db.node);
      for (const p of [nodeWeb, nodeDb]) for (const port of [22, 23]) await p.listen("tcp", port);
      const client = await web.endpoint("client", { app: "client" }, { tcp: [80] });
      const server = await db.endpoint("server", { app: "server" }, { tcp: [80] });
      const known = (lab: AgentLab, ip: string): boolean =>
        lab.agent.remoteEndpoints.list().some((r) => r.ip === ip);
      await until("both nodes know the other's pod", () => known(web, server.ip) && known(db, client.ip));
      // The db node sees the web node with its labels: a node-local identity, not the bare remote-node (6).
      const idOf = (lab: AgentLab, ip: string): number | undefined =>
        lab.agent.ipcache().find((e) => e.prefix === `${ip}/32`)?.identity;
      await until("db knows web's labelled node identity", () => (idOf(db, ipWeb) ?? 0) >= LOCAL_ID_MIN);
      await until("web knows db's labelled node identity", () => (idOf(web, ipDb) ?? 0) >= LOCAL_ID_MIN);

      const look = async (): Promise<Record<string, string>> => ({
        "web->db:22": await nodeWeb.tcp(ipDb, 22, T),
        "web->db:23": await nodeWeb.tcp(ipDb, 23, T),
        "client->db:22": await client.probe.tcp(ipDb, 22, T),
        "server->db:22": await server.probe.tcp(ipDb, 22, T),
        "db->web:23": await nodeDb.tcp(ipWeb, 23, T),
        "client->web:23": await client.probe.tcp(ipWeb, 23, T),
        "client->server:80": await client.probe.tcp(server.ip, 80, T),
        "db->client:80": await nodeDb.tcp(client.ip, 80, T),
        "db->server:80": await nodeDb.tcp(server.ip, 80, T),
      });
      const open = await look();
      assert.ok(
        Object.values(open).every((v) => v === "ok"),
        `no host policy: everything open ${JSON.stringify(open)}`,
      );

      for (const lab of labs) await lab.agent.applyPolicies(INGRESS, "db-ssh.yaml");
      assert.deepEqual(await look(), {
        ...open,
        "web->db:23": "timeout",
        "client->db:22": "timeout",
        "server->db:22": "timeout",
      });
      assert.equal(await nodeDb.tcp(ipDb, 23, T), "ok", "the node's own address: loopback, never judged");

      for (const lab of labs) await lab.agent.applyPolicies(EGRESS, "db-out.yaml");
      assert.deepEqual(await look(), {
        ...open,
        "web->db:23": "timeout",
        "client->db:22": "timeout",
        "server->db:22": "timeout",
        "db->web:23": "timeout",
        "db->client:80": "timeout",
      });
      assert.equal(await nodeDb.tcp(ipWeb, 22, T), "ok", "db -> web:22 allowed by toNodes role=web");

      for (const lab of labs) {
        await lab.agent.deletePolicies(INGRESS, "db-ssh.yaml");
        await lab.agent.deletePolicies(EGRESS, "db-out.yaml");
      }
      assert.deepEqual(await look(), open, "policies removed: open again");
      for (const lab of labs) assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      for (const s of syncs) await s.stop().catch(() => undefined);
      for (const l of leases) l.release();
      for (const kv of kvs) await kv.close();
      for (const lab of labs) await lab.destroy();
      await u.destroy();
      await etcd.stop();
    }
  });
});
