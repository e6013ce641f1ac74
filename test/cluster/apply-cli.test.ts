/**
 * `membrane apply|delete --cluster-store etcd://...` (straight to etcd, no
 * agent) and `--wait` through etcd or through an agent's socket (needs root
 * and etcd): validated whole first (a rejected file writes nothing), waits
 * until every live node realized the write, and fails naming the laggards.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { CLUSTER_KEYS } from "../../src/cluster/keys.js";
import { AgentLab, rootSkipReason, SERVER_FROM_CLIENT } from "../agent/e2e/harness.js";
import { ROOT, tempFiles } from "../cli/run-cli.js";
import { clusterNode, clusterOpts } from "./cluster-node.js";
import { skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();

/** The built CLI, without blocking this process (an in-process agent answers it). */
function membrane(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(ROOT, "bin/membrane.js"), ...args],
      { cwd: ROOT, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe("cluster: membrane apply --cluster-store and --wait (root, etcd)", { skip }, () => {
  let etcd: EtcdHandle;
  before(async () => {
    etcd = await startEtcd();
  });
  after(async () => {
    await etcd?.stop();
  });

  test("apply --cluster-store --wait writes to etcd without an agent and returns once the node enforced it; a rejected file writes nothing; delete --wait", async () => {
    const node = await clusterNode(etcd, "rs-h");
    const lab = await AgentLab.start("rsh", {
      cluster: clusterOpts(etcd, node.node, "10.211.8.0/24"),
      podCidr4: "10.211.8.0/24",
    });
    try {
      const store = "etcd://" + etcd.endpoint.replace(/^http:\/\//, "");
      const dir = tempFiles({
        "server.yaml": SERVER_FROM_CLIENT,
        "bad.yaml": SERVER_FROM_CLIENT.replace('"80"', '"99999"'),
      });
      const bad = await membrane("apply", "-f", join(dir, "bad.yaml"), "--cluster-store", store);
      assert.notEqual(bad.code, 0);
      assert.match(bad.stderr, /bad\.yaml/);
      assert.deepEqual((await node.kv.list(CLUSTER_KEYS.policies)).kvs, [], "nothing written");

      const ok = await membrane(
        "apply",
        "-f",
        join(dir, "server.yaml"),
        "--cluster-store",
        store,
        "--wait",
        "--timeout",
        "20s",
      );
      assert.equal(ok.code, 0, ok.stderr);
      assert.match(ok.stdout, /realized revision \d+ on 1 node: rs-h/);
      assert.deepEqual(
        lab.agent.listPolicies().map((p) => p.name),
        ["server"],
        "the node enforces it by the time --wait returns",
      );

      const again = await membrane(
        "apply",
        "-f",
        join(dir, "server.yaml"),
        "--cluster-store",
        store,
        "--wait",
      );
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /unchanged/);

      const status = await membrane("get", "status", "--socket", lab.options.socketPath);
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /node rs-h \(this node\)\s+realized revision \d+/);

      const del = await membrane(
        "delete",
        "-f",
        join(dir, "server.yaml"),
        "--cluster-store",
        store,
        "--wait",
      );
      assert.equal(del.code, 0, del.stderr);
      assert.deepEqual(lab.agent.listPolicies(), []);
    } finally {
      await lab.destroy();
      await node.close();
    }
  });

  test("apply --wait through the agent fails naming the live node that did not realize the revision", async () => {
    const node = await clusterNode(etcd, "rs-i");
    const lagging = await clusterNode(etcd, "rs-j"); // registered, no agent: realizes nothing
    const lab = await AgentLab.start("rsi", {
      cluster: clusterOpts(etcd, node.node, "10.211.9.0/24"),
      podCidr4: "10.211.9.0/24",
    });
    try {
      const dir = tempFiles({ "w.yaml": SERVER_FROM_CLIENT.replace("name: server", "name: w") });
      const r = await membrane(
        "apply",
        "-f",
        join(dir, "w.yaml"),
        "--socket",
        lab.options.socketPath,
        "--wait",
        "--timeout",
        "1s",
      );
      assert.notEqual(r.code, 0);
      assert.match(r.stdout, /created/, "the apply itself went through");
      assert.match(
        r.stderr,
        // (an earlier test's node may still be alive until its released lease runs out)
        /Cannot confirm revision \d+ on every node within 1 s: not realized by (.*, )?rs-j \(realized nothing yet\)/,
      );
      await lagging.close(); // its node record goes with its lease: no longer waited for
      const w = await membrane(
        "apply",
        "-f",
        join(dir, "w.yaml"),
        "--socket",
        lab.options.socketPath,
        "--wait",
      );
      assert.equal(w.code, 0, w.stderr);
      assert.match(w.stdout, /on 1 node: rs-i/);
    } finally {
      await lab.destroy();
      await node.close();
      await lagging.close();
    }
  });
});
