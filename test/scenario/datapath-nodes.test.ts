/**
 * `membrane policy test --datapath --nodes 2` end to end (root, etcd): each
 * scenario on a scratch cluster (etcd, an underlay bridge, two agents in
 * cluster mode in their node namespaces); endpoints on both nodes, packets
 * across the underlay judged by the sender's identity, verdicts compared
 * with the offline engine's. Nothing is left behind, also after Ctrl-C.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { DatapathScenarioResult } from "../../src/scenario/datapath.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { rootWith } from "../support/skip.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

function skipReason(): string | false {
  return rootWith("network namespaces, nftables", ["ip", "nft", "ping"]) ?? skipWithoutEtcd();
}
const skip = skipReason();

/** A stem of this run only ("pt": this suite's namespaces). */
const stem = (): string => "pt" + randomBytes(3).toString("hex").slice(0, 5);

function netnsOf(s: string): string[] {
  const out = spawnSync("ip", ["netns", "list"], { encoding: "utf8" }).stdout;
  return out.split("\n").flatMap((l) => (l.startsWith(s) ? [l.split(" ")[0] ?? l] : []));
}

const CLI = (s: string, ...args: string[]): string[] => [
  join(ROOT, "bin/membrane.js"),
  "policy",
  "test",
  "--datapath",
  "--nodes",
  "2",
  "--netns-prefix",
  s,
  ...args,
];

interface JsonOut {
  scenarios: DatapathScenarioResult[];
  passed: number;
  failed: number;
  skipped: number;
}

function runJson(...args: string[]): { code: number | null; out: JsonOut; stderr: string } {
  const s = stem();
  const r = spawnSync(process.execPath, CLI(s, "-o", "json", ...args), {
    cwd: ROOT,
    encoding: "utf8",
    timeout: 900_000, // a safety net, not a time bound (a busy 2-core machine)
  });
  assert.deepEqual(netnsOf(s), [], "the run left scratch namespaces behind");
  let out: JsonOut;
  try {
    out = JSON.parse(r.stdout) as JsonOut;
  } catch {
    assert.fail(`no JSON (exit ${r.status}): ${r.stdout.slice(0, 2000)} ${r.stderr.slice(0, 2000)}`);
  }
  return { code: r.status, out, stderr: r.stderr };
}

const nodeOf = (s: DatapathScenarioResult, ep: string): string | undefined =>
  s.nodes?.find((n) => n.endpoints.includes(ep))?.node;

/** One allowed and one dropped connection from node b to node a, one on node b alone. */
const CROSS = `name: pt-cross
endpoints:
  - {name: server, namespace: default, labels: {app: server}, ip: 10.9.1.10}
  - {name: client, namespace: default, labels: {app: client}, ip: 10.9.2.10}
  - {name: intruder, namespace: default, labels: {app: intruder}, ip: 10.9.2.20}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: server, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: server}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "80", protocol: TCP}]}]
queries:
  - {from: client, to: server, proto: TCP, port: 80, expect: allow}
  - {from: intruder, to: server, proto: TCP, port: 80, expect: deny, how: drop}
  - {from: client, to: server, proto: TCP, port: 8080, expect: deny, how: drop}
  - {from: intruder, to: client, proto: TCP, port: 80, expect: allow}
`;

describe("policy test --datapath --nodes 2 (root, etcd)", { skip }, () => {
  test("endpoints on two node namespaces; allowed packets cross the underlay, the others are dropped by the sender's identity", () => {
    const dir = mkdtempSync(join(tmpdir(), "pt-nodes-"));
    try {
      const file = join(dir, "cross.yaml");
      writeFileSync(file, CROSS);
      const { code, out, stderr } = runJson(file);
      assert.equal(code, 0, stderr);
      assert.deepEqual([out.passed, out.failed, out.skipped], [4, 0, 0]);
      const s = out.scenarios[0];
      assert.ok(s);
      assert.deepEqual(
        s.nodes?.map((n) => [n.node, n.endpoints, n.podCidrs]),
        [
          ["node-a", ["default/server"], ["10.9.1.0/24"]],
          ["node-b", ["default/client", "default/intruder"], ["10.9.2.0/24"]],
        ],
      );
      const [allowed, intruder, port8080, local] = s.results;
      assert.deepEqual(allowed?.path?.from, "node-b");
      assert.deepEqual(allowed?.path?.to, "node-a");
      assert.ok((allowed?.path?.underlayPackets ?? 0) > 0, "the allowed connection crossed the underlay");
      // Dropped at the server's node (ingress): the sender's packets crossed the underlay too.
      assert.equal(intruder?.actual, "deny");
      assert.match(intruder?.dropLog ?? "", /^mbr:d:.*:in:/);
      assert.ok((intruder?.path?.underlayPackets ?? 0) > 0, "the intruder's SYN crossed the underlay");
      assert.equal(port8080?.actual, "deny");
      assert.deepEqual(
        [local?.path?.from, local?.path?.to, local?.path?.underlayPackets],
        ["node-b", "node-b", undefined],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("examples/starwars and l4/named-ports on two nodes agree with the offline verdicts; each endpoint's node is named", () => {
    const { code, out, stderr } = runJson("examples/starwars/", "examples/l4/named-ports.yaml");
    const failed = out.scenarios.flatMap((s) => [
      ...(s.error ? [`${s.file}: ${s.error.message}`] : []),
      ...s.results
        .filter((r) => r.outcome === "fail")
        .map((r) => `${s.file}: ${r.from} -> ${r.to} ${r.decidedBy.join("; ")}`),
    ]);
    assert.deepEqual(failed, [], stderr);
    assert.equal(code, 0, stderr);
    // named-ports: egress to a named port of a pod on the other node (failed before the cluster ipcache carried ports).
    assert.ok(out.passed >= 16, `passed ${out.passed}`);
    for (const s of out.scenarios.filter((x) => x.file.includes("starwars"))) {
      assert.equal(s.nodes?.length, 2, s.name);
      const a = nodeOf(s, "default/deathstar");
      const b = nodeOf(s, "default/tiefighter");
      assert.ok(
        a !== undefined && b !== undefined && a !== b,
        `${s.name}: deathstar on ${a}, tiefighter on ${b}`,
      );
      const cross = s.results.filter((r) => r.path && r.path.from !== r.path.to);
      assert.ok(cross.length > 0, `${s.name}: some queries cross nodes`);
    }
  });

  test("Ctrl-C while the cluster is built: namespaces and etcd are gone, exit 130", async () => {
    const s = stem();
    const child = spawn(process.execPath, CLI(s, "examples/starwars/sw-l3-l4.yaml"), {
      cwd: ROOT,
      stdio: "ignore",
    });
    const exited = new Promise<number | null>((r) => child.on("exit", (code) => r(code)));
    const etcds = (): string[] =>
      spawnSync("ps", ["-o", "pid=,comm=", "--ppid", String(child.pid)], { encoding: "utf8" })
        .stdout.split("\n")
        .filter((l) => /\betcd\b/.test(l))
        .map((l) => l.trim().split(/\s+/)[0] ?? "");
    let seen: string[] = [];
    const deadline = Date.now() + 120_000; // a safety net
    while (Date.now() < deadline && (netnsOf(s).length === 0 || seen.length === 0)) {
      seen = etcds();
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(netnsOf(s).length > 0 && seen.length > 0, "the run started etcd and its namespaces");
    child.kill("SIGINT");
    assert.equal(await exited, 130);
    assert.deepEqual(netnsOf(s), [], "namespaces left after Ctrl-C");
    for (const pid of seen) {
      const alive = spawnSync("kill", ["-0", pid]).status === 0;
      assert.ok(!alive, `etcd ${pid} still runs after Ctrl-C`);
    }
  });
});
