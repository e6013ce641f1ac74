// `membrane agent --cluster-store` as a real process (needs root: a node namespace of its own):
// it registers in etcd with a pod CIDR from --cluster-cidr, `membrane get nodes` and `get status`
// show the cluster; a config file works; an unreachable store or a bad flag stops the start with
// an error naming it. The agent without --cluster-store is covered by test/agent/e2e.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { freePort, skipWithoutEtcd, startEtcd, type EtcdHandle } from "../../src/lab/etcd.js";

const BIN = fileURLToPath(new URL("../../../bin/membrane.js", import.meta.url));

function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const skip = rootSkipReason() ?? skipWithoutEtcd();

describe("membrane agent in cluster mode", { skip }, () => {
  let etcd: EtcdHandle;
  let dir = "";
  const prefix = uniquePrefix("co");
  const ns = `${prefix}-node`;
  before(async () => {
    etcd = await startEtcd();
    dir = mkdtempSync(join(tmpdir(), "membrane-cl-"));
    spawnSync("ip", ["netns", "add", ns]);
  });
  after(async () => {
    await cleanupPrefix(`${prefix}-`).catch(() => undefined);
    spawnSync("ip", ["netns", "del", ns]);
    rmSync(dir, { recursive: true, force: true });
    await etcd.stop();
  });

  const base = (name: string): string[] => [
    "agent",
    "--state-dir",
    join(dir, name),
    "--socket",
    join(dir, `${name}.sock`),
    "--node-netns",
    ns,
    "--netns-prefix",
    `${prefix}-`,
    "--table",
    `${prefix}t`,
    "--resync",
    "0",
    "--no-flows",
    "--no-proxy",
  ];

  it("registers with a pod CIDR from --cluster-cidr; get nodes and get status show it", async () => {
    const cfg = join(dir, "agent.yaml");
    writeFileSync(
      cfg,
      [
        `cluster-store: etcd://127.0.0.1:${new URL(etcd.endpoint).port}`,
        "cluster-cidr: 10.77.0.0/16",
        "node-labels: {zone: z1}",
        "",
      ].join("\n"),
    );
    const args = [...base("a"), "--config", cfg, "--node-name", "co-a", "--node-ip", "192.0.2.10"];
    const proc = spawn(process.execPath, [BIN, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let logs = "";
    proc.stderr.on("data", (d: Buffer) => (logs += d.toString()));
    try {
      const deadline = Date.now() + 60_000; // safety net
      while (!logs.includes("API listening")) {
        if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`agent did not start: ${logs}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const sock = join(dir, "a.sock");
      const nodes = cli("get", "nodes", "-o", "json", "--socket", sock);
      assert.equal(nodes.code, 0, nodes.stderr);
      const list = JSON.parse(nodes.stdout) as {
        name: string;
        alive: boolean;
        podCidrs: string[];
        labels: object;
        routing: string;
        addresses: object;
        self: boolean;
      }[];
      assert.equal(list.length, 1);
      assert.equal(list[0]?.name, "co-a");
      assert.equal(list[0]?.alive, true);
      assert.equal(list[0]?.self, true);
      assert.deepEqual(list[0]?.podCidrs, ["10.77.0.0/24"]);
      assert.deepEqual(list[0]?.labels, { zone: "z1" });
      assert.deepEqual(list[0]?.addresses, { ipv4: "192.0.2.10" });
      assert.equal(list[0]?.routing, "native");
      const table = cli("get", "nodes", "--socket", sock);
      assert.match(
        table.stdout,
        /co-a \(this node\)\s+yes\s+192\.0\.2\.10\s+10\.77\.0\.0\/24\s+native\s+zone=z1/,
      );
      const st = JSON.parse(cli("get", "status", "-o", "json", "--socket", sock).stdout) as {
        cluster: {
          mode: string;
          store: { connected: boolean };
          lease: { state: string; ttlSeconds: number };
        };
      };
      assert.equal(st.cluster.mode, "cluster");
      assert.equal(st.cluster.store.connected, true);
      assert.equal(st.cluster.lease.state, "held");
      assert.equal(st.cluster.lease.ttlSeconds, 15);
      // The record is in etcd under the layout of keys.ts.
      const s = etcd.store();
      try {
        const rec = JSON.parse((await s.get("cluster/nodes/co-a"))?.value ?? "{}") as { podCidrs: string[] };
        assert.deepEqual(rec.podCidrs, ["10.77.0.0/24"]);
        assert.ok(await s.get("cluster/podcidrs/co-a"));
      } finally {
        await s.close();
      }
    } finally {
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await exited;
    }
  });

  it("an unreachable store stops the start: CLUSTER_UNAVAILABLE naming the endpoint", async () => {
    const port = await freePort();
    const r = cli(
      ...base("b"),
      "--cluster-store",
      `etcd://127.0.0.1:${port}`,
      "--node-name",
      "co-b",
      "--node-ip",
      "192.0.2.11",
      "--cluster-cidr",
      "10.78.0.0/16",
    );
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, new RegExp(`Cannot reach the cluster store http://127\\.0\\.0\\.1:${port}`));
  });

  it("bad cluster flags are refused naming the flag", () => {
    const store = ["--cluster-store", etcd.endpoint.replace("http", "etcd")];
    const cases: [string[], RegExp][] = [
      [
        [
          "--cluster-store",
          "10.0.0.1:2379",
          "--node-name",
          "x",
          "--node-ip",
          "192.0.2.1",
          "--cluster-cidr",
          "10.0.0.0/16",
        ],
        /--cluster-store "10\.0\.0\.1:2379" is not an etcd endpoint/,
      ],
      [
        [...store, "--node-name", "Bad_Name", "--node-ip", "192.0.2.1", "--cluster-cidr", "10.0.0.0/16"],
        /--node-name/,
      ],
      [[...store, "--node-name", "x", "--cluster-cidr", "10.0.0.0/16"], /needs --node-ip/],
      [
        [...store, "--node-name", "x", "--node-ip", "300.1.1.1", "--cluster-cidr", "10.0.0.0/16"],
        /--node-ip "300\.1\.1\.1"/,
      ],
      [[...store, "--node-name", "x", "--node-ip", "192.0.2.1"], /needs --cluster-cidr or --pod-cidr/],
      [
        [
          ...store,
          "--node-name",
          "x",
          "--node-ip",
          "192.0.2.1",
          "--cluster-cidr",
          "10.0.0.0/16",
          "--node-labels",
          "zone",
        ],
        /--node-labels "zone"/,
      ],
      [
        [
          ...store,
          "--node-name",
          "x",
          "--node-ip",
          "192.0.2.1",
          "--cluster-cidr",
          "10.0.0.0/16",
          "--cluster-lease-ttl",
          "1",
        ],
        /--cluster-lease-ttl "1"/,
      ],
      [
        [
          ...store,
          "--node-name",
          "x",
          "--node-ip",
          "192.0.2.1",
          "--cluster-cidr",
          "10.0.0.0/16",
          "--etcd-cert",
          "c.pem",
        ],
        /--etcd-cert\/--etcd-key need --etcd-ca/,
      ],
    ];
    for (const [args, re] of cases) {
      const r = cli(...base("c"), ...args);
      assert.notEqual(r.code, 0, args.join(" "));
      assert.match(r.stderr, re, args.join(" "));
    }
  });
});
