// The lab cluster (src/lab/cluster.ts) with two real `membrane agent --cluster-store` processes
// (root): endpoints made through each node's API, one apply through node 1 waited for on every
// node, real TCP across nodes allowed and dropped by the policy, the receiving node's flows name
// the sender's identity; after stop() (twice) no namespace of the prefix and no process is left.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { listNetns } from "../../src/datapath/netns.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { startLabCluster, type LabCluster } from "../../src/lab/cluster.js";
import { applyAndWait, createEndpoint, readFlows, waitRemote } from "../../src/lab/cluster-api.js";
import { Probe } from "../../src/probe/probe.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const T = 600; // probe timeout for "dropped"

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

/**
 * Live processes whose group is one of `pgids` or whose command line names `prefix`. Zombies are
 * dead already (killed, their parent gone): they wait for init to reap them and hold nothing.
 */
export function leftovers(pgids: readonly number[], prefix: string): string[] {
  const ps = spawnSync("ps", ["-eo", "pid=,pgid=,stat=,args="], { encoding: "utf8" }).stdout;
  return ps
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => {
      const [pid, pgid, stat] = l.split(/\s+/);
      if (Number(pid) === process.pid || l.includes("ps -eo") || stat?.startsWith("Z")) return false;
      return pgids.includes(Number(pgid)) || l.includes(prefix);
    });
}

describe("lab cluster of real agent processes (root)", { skip }, () => {
  test("two nodes: an apply through n1 is enforced on n2 across nodes; n2's flows name the sender; stop() leaves nothing", async () => {
    const prefix = uniquePrefix("lb");
    const lines: string[] = [];
    let lab: LabCluster | undefined;
    const probes: Probe[] = [];
    try {
      lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 5, log: (l) => lines.push(l) });
      const [n1, n2] = lab.nodes;
      assert.ok(n1 && n2);
      assert.deepEqual(
        lab.nodes.map((n) => n.name),
        ["n1", "n2"],
      );
      assert.ok(lines.some((l) => l.startsWith("etcd ready")));

      const server = await createEndpoint(n2, "server", { app: "server" });
      const client = await createEndpoint(n1, "client", { app: "client" });
      const intruder = await createEndpoint(n1, "intruder", { app: "intruder" });
      assert.ok(server.netns.startsWith(`${prefix}-n2-`), server.netns);
      const srv = Probe.start(server.netns);
      const cli = Probe.start(client.netns);
      const bad = Probe.start(intruder.netns);
      probes.push(srv, cli, bad);
      await srv.listen("tcp", 80);
      await srv.listen("tcp", 8080);

      const { report, nodes } = await applyAndWait(n1, POLICY, "server.yaml");
      assert.deepEqual(
        nodes.map((n) => n.node),
        ["n1", "n2"],
      );
      assert.ok(nodes.every((n) => n.realizedRevision >= (report.clusterRevision ?? Infinity)));
      await waitRemote(n2, [client.ipv4, intruder.ipv4]);
      await waitRemote(n1, [server.ipv4]);

      assert.equal(await cli.tcp(server.ipv4, 80, 2000), "ok", "client (n1) -> server (n2):80");
      assert.notEqual(await bad.tcp(server.ipv4, 80, T), "ok", "intruder (n1) -> server (n2):80 dropped");
      assert.notEqual(await cli.tcp(server.ipv4, 8080, T), "ok", "client -> server:8080 dropped");

      // n2 judged the packets: its flows carry its name and the sender's identity from the cluster.
      const deadline = Date.now() + 10_000; // the verdict log is asynchronous; a safety net
      let drops = await readFlows(n2, { allowlist: [{ verdict: ["DROPPED"] }] });
      while (!drops.some((f) => f.source?.identity === intruder.identity) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
        drops = await readFlows(n2, { allowlist: [{ verdict: ["DROPPED"] }] });
      }
      const drop = drops.find((f) => f.IP?.source === intruder.ipv4);
      assert.ok(drop, `a drop of the intruder on n2: ${JSON.stringify(drops)}`);
      assert.equal(drop.node_name, "n2");
      assert.equal(drop.source?.identity, intruder.identity);
      assert.ok(
        drop.source?.labels?.some((l) => l.endsWith("app=intruder")),
        JSON.stringify(drop.source),
      );
      assert.equal(drop.source?.node_name, "n1", "the sender's node (the owner of its pod CIDR)");
      assert.equal(drop.destination?.identity, server.identity);
      const allowed = await readFlows(n2, { allowlist: [{ verdict: ["FORWARDED"] }] });
      const ok = allowed.find((f) => f.IP?.source === client.ipv4);
      assert.ok(ok, `a forwarded flow of the client on n2: ${JSON.stringify(allowed)}`);
      assert.equal(ok.source?.identity, client.identity);
      assert.equal(ok.source?.node_name, "n1");
      assert.ok(
        ok.ingress_allowed_by?.some((p) => p.name === "server"),
        JSON.stringify(ok),
      );
    } finally {
      for (const p of probes) p.stop();
      const pgids = lab?.nodes.map((n) => n.pid) ?? [];
      const dir = lab?.dir;
      await lab?.stop();
      await lab?.stop(); // safe twice
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(prefix)),
        [],
        "no namespace of the prefix",
      );
      assert.deepEqual(leftovers(pgids, prefix), [], "no process of the lab");
      if (dir) assert.equal(existsSync(dir), false, "the temp dir is removed");
    }
  });
});
