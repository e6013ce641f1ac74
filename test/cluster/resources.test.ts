/**
 * Cluster-wide resources (issue 11 item 5; needs root and etcd): policies,
 * namespaces and services applied on one node live in etcd and are enforced
 * on every node; each node reports the revision it realized in
 * `cluster/status/<node>`, and `apply --wait` (waitRealized) names the nodes
 * that lag. Two agents, each in its own node namespace, on one real etcd.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { CLUSTER_KEYS, statusKey, type NodeStatusV1 } from "../../src/cluster/keys.js";
import { AgentClient } from "../../src/agent/client.js";
import { readRealized, waitRealized } from "../../src/cluster/realized.js";
import { MembraneError } from "../../src/errors.js";
import { AgentLab, rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import { clusterNode, clusterOpts } from "./cluster-node.js";
import { until } from "../support/until.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();

describe("cluster: resources in etcd, realized revisions (root, etcd)", { skip }, () => {
  let etcd: EtcdHandle;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  test("a policy applied on node a is enforced on node b, a delete on b leaves both; the status of each node says what it realized", async () => {
    const na = await clusterNode(etcd, "rs-a");
    const nb = await clusterNode(etcd, "rs-b");
    const labs: AgentLab[] = [];
    try {
      const a = await AgentLab.start("rsa", {
        cluster: clusterOpts(etcd, na.node, "10.211.1.0/24"),
        podCidr4: "10.211.1.0/24",
      });
      labs.push(a);
      const b = await AgentLab.start("rsb", {
        cluster: clusterOpts(etcd, nb.node, "10.211.2.0/24"),
        podCidr4: "10.211.2.0/24",
      });
      labs.push(b);
      const server = await b.endpoint("server", { app: "server" }, { tcp: [80] });
      const client = await b.endpoint("client", { app: "client" });
      const other = await b.endpoint("other", { app: "other" });
      assert.equal(await other.probe.tcp(server.ip, 80, T), "ok", "no policy yet");

      const applied = await a.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      const rev = applied.clusterRevision ?? 0;
      assert.ok(rev > 0, "the apply names the etcd revision to wait for");
      assert.ok(
        (await na.kv.get(`${CLUSTER_KEYS.policies}CiliumNetworkPolicy/default/server`)) !== undefined,
      );

      const nodes = await waitRealized(() => readRealized(na.kv), rev, 20_000);
      assert.deepEqual(nodes.map((n) => n.node).sort(), ["rs-a", "rs-b"]);
      assert.deepEqual(
        b.agent.listPolicies().map((p) => p.name),
        ["server"],
      );
      assert.equal(await client.probe.tcp(server.ip, 80, T), "ok");
      assert.equal(await other.probe.tcp(server.ip, 80, T), "timeout", "node b enforces a's policy");
      const st = JSON.parse((await nb.kv.get(statusKey("rs-b")))?.value ?? "{}") as NodeStatusV1;
      assert.ok(st.realizedRevision >= rev && st.lastError === undefined, JSON.stringify(st));

      // The same file again on b: unchanged, and the revision to wait for is one b realized.
      const again = await b.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      assert.deepEqual(
        again.policies.map((p) => p.status),
        ["unchanged"],
      );
      assert.ok((again.clusterRevision ?? 0) >= rev);

      const deleted = await b.agent.deletePolicies(SERVER_FROM_CLIENT, "server.yaml");
      await waitRealized(() => readRealized(nb.kv), deleted.clusterRevision ?? Infinity, 20_000);
      assert.deepEqual(a.agent.listPolicies(), [], "node a forgot the policy b deleted");
      assert.equal(await other.probe.tcp(server.ip, 80, T), "ok");
    } finally {
      for (const l of labs) await l.destroy();
      await na.close();
      await nb.close();
    }
  });

  test("namespace labels and services set on one node reach the other; a node started later lists what was applied before it", async () => {
    const na = await clusterNode(etcd, "rs-c");
    const nb = await clusterNode(etcd, "rs-d");
    const labs: AgentLab[] = [];
    try {
      const a = await AgentLab.start("rsc", {
        cluster: clusterOpts(etcd, na.node, "10.211.3.0/24"),
        podCidr4: "10.211.3.0/24",
      });
      labs.push(a);
      await a.agent.setNamespaceLabels("blue", { team: "blue" });
      await a.agent.upsertService({
        namespace: "blue",
        name: "db",
        ports: [{ port: 5432, protocol: "TCP" }],
        ips: ["198.51.100.7"],
      });
      const b = await AgentLab.start("rsd", {
        cluster: clusterOpts(etcd, nb.node, "10.211.4.0/24"),
        podCidr4: "10.211.4.0/24",
      });
      labs.push(b);
      const ep = await b.endpoint("web", { app: "web" }, { namespace: "blue" });
      const labelsOf = (): string[] =>
        b.agent.identities().find((i) => i.endpoints.includes(`blue/web`))?.labels ?? [];
      assert.ok(
        labelsOf().includes("k8s:io.cilium.k8s.namespace.labels.team=blue"),
        `b knows a's namespace labels: ${labelsOf().join(" ")}`,
      );
      const services = (b.agent as unknown as { services: { syncedKeys(): string[] } }).services;
      assert.deepEqual(services.syncedKeys(), ["services/blue/db"], "b knows a's service");
      void ep;

      // A change after b started arrives through the watch.
      await a.agent.setNamespaceLabels("blue", { team: "green" });
      await until("b to see the new namespace labels", () =>
        labelsOf().includes("k8s:io.cilium.k8s.namespace.labels.team=green"),
      );

      // Through the API: the answer carries the revision to wait for, which every node realizes.
      const api = new AgentClient({ socketPath: a.options.socketPath });
      const put = (await api.request("PUT", "/v1/namespaces/blue", { labels: { team: "red" } })) as {
        clusterRevision?: number;
      };
      assert.ok(typeof put.clusterRevision === "number", `a revision to wait for: ${JSON.stringify(put)}`);
      const kv = etcd.store();
      try {
        const nodes = await waitRealized(() => readRealized(kv), put.clusterRevision, 30_000);
        assert.deepEqual(nodes.map((n) => n.node).sort(), ["rs-c", "rs-d"]);
      } finally {
        await kv.close();
      }
      assert.ok(labelsOf().includes("k8s:io.cilium.k8s.namespace.labels.team=red"), "b realized it");
      const svc = (await api.request("PUT", "/v1/services/blue/db", { ports: [{ port: 5433 }] })) as {
        clusterRevision?: number;
      };
      assert.ok(typeof svc.clusterRevision === "number" && svc.clusterRevision > put.clusterRevision);
    } finally {
      for (const l of labs) await l.destroy();
      await na.close();
      await nb.close();
    }
  });

  test("a rejected file changes nothing on any node", async () => {
    const na = await clusterNode(etcd, "rs-e");
    const labs: AgentLab[] = [];
    try {
      const a = await AgentLab.start("rse", {
        cluster: clusterOpts(etcd, na.node, "10.211.5.0/24"),
        podCidr4: "10.211.5.0/24",
      });
      labs.push(a);
      const before = await na.kv.list(CLUSTER_KEYS.policies);
      const bad =
        SERVER_FROM_CLIENT +
        "---\n" +
        SERVER_FROM_CLIENT.replace("server}", "s2}").replace('"80"', '"99999"');
      await assert.rejects(a.agent.applyPolicies(bad, "bad.yaml"), /1 problem in 1 of 2 documents/);
      const now = await na.kv.list(CLUSTER_KEYS.policies);
      assert.deepEqual(now.kvs, before.kvs);
      assert.deepEqual(a.agent.listPolicies(), []);
    } finally {
      for (const l of labs) await l.destroy();
      await na.close();
    }
  });

  test("apply --wait names a live node that has not realized the revision, with what it realized", async () => {
    const na = await clusterNode(etcd, "rs-f");
    const lagging = await clusterNode(etcd, "rs-g"); // registered, no agent: realizes nothing
    const labs: AgentLab[] = [];
    try {
      const a = await AgentLab.start("rsf", {
        cluster: clusterOpts(etcd, na.node, "10.211.6.0/24"),
        podCidr4: "10.211.6.0/24",
      });
      labs.push(a);
      const r = await a.agent.applyPolicies(SERVER_FROM_CLIENT.replace("name: server", "name: w"), "w.yaml");
      // rs-f's agent realizes it (not timed: under load that can take longer than the wait below).
      await until("rs-f realized the revision", async () =>
        (await readRealized(na.kv)).some(
          (n) => n.node === "rs-f" && n.realizedRevision >= (r.clusterRevision ?? 0),
        ),
      );
      const err = await waitRealized(() => readRealized(na.kv), r.clusterRevision ?? 0, 300).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof MembraneError && err.code === "CLUSTER_NOT_REALIZED", String(err));
      assert.match(err.message, /rs-g \(realized nothing yet\)/);
      assert.doesNotMatch(err.message, /rs-f/);
      await a.agent.deletePolicies(SERVER_FROM_CLIENT.replace("name: server", "name: w"), "w.yaml");
    } finally {
      for (const l of labs) await l.destroy();
      await na.close();
      await lagging.close();
    }
  });
});
