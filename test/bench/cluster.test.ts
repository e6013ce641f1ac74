// Smoke test of the cluster benchmark (`npm run bench -- cluster --quick`, needs root and etcd): it
// runs end to end with 3 real agent processes and a few simulated nodes, prints every figure as a
// JSON line with the load average, every simulated endpoint reaches every agent, and nothing is
// left behind (namespaces, agent processes). No figure's duration is asserted (shared machine).
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { rootSkipReason } from "../datapath/harness.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";

const BENCH = fileURLToPath(new URL("../../bench/cluster.js", import.meta.url));

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BENCH, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    p.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const t = setTimeout(() => p.kill("SIGTERM"), 600_000); // a safety net, not a measurement
    p.on("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("cluster benchmark (--quick, root)", { skip: rootSkipReason() ?? skipWithoutEtcd() }, () => {
  test("3 agent processes, simulated nodes ingested everywhere, every figure printed with the load; nothing left behind", async () => {
    const r = await runBench(["--quick", "--prefix=cbq"]);
    const lines = r.stdout
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const fig = (name: string): Record<string, unknown>[] => lines.filter((l) => l["figure"] === name);
    assert.deepEqual(fig("error"), [], r.stdout + r.stderr.slice(-4000));
    assert.equal(r.code, 0, r.stderr.slice(-4000));
    for (const l of lines) assert.equal(typeof l["load1m"], "number", JSON.stringify(l));
    const prefix = String(fig("lab-start")[0]?.["prefix"]);
    assert.match(prefix, /^cbq[0-9a-f]{6}$/);

    const ingest = fig("simulated-cluster-ingest")[0] as Record<string, unknown>;
    assert.equal(ingest["ok"], true, JSON.stringify(ingest));
    for (const n of ingest["remoteEndpointsPerNode"] as { sims: number; asClaimed: number }[]) {
      assert.equal(n.sims, 10 * 20, "every simulated endpoint reached every agent");
      assert.equal(n.asClaimed, n.sims, "with the number its node claimed");
    }
    assert.equal((fig("agent-memory-cpu")[0]?.["rssMiB"] as number[]).length, 3);
    const prop = fig("propagation")[0] as Record<string, unknown>;
    assert.equal(prop["samples"], 6, "3 creates x 2 peers, each seen by a real packet");
    assert.equal(prop["missing"], 0);
    assert.equal((prop["kernel"] as { missing: number }).missing, 0);
    assert.equal(fig("etcd-writes-per-endpoint").length, 2);
    const apply = fig("policy-apply-all-nodes")[0] as Record<string, unknown>;
    assert.equal(apply["samples"], 3);

    const left = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
    assert.ok(!left.includes(prefix), `namespaces left behind: ${left}`);
    const procs = spawnSync("pgrep", ["-f", `node-name ${prefix}`], { encoding: "utf8" }).stdout.trim();
    assert.equal(procs, "", "agent processes left behind");
  });
});
