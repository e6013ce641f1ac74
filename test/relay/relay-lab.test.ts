/**
 * `membrane relay` (a real process) over a lab cluster of two real agents on etcd (root):
 * the relay finds both agents' Observer APIs in their node records; real cross-node TCP makes
 * flows on both nodes and they arrive through the relay, in time order (what is not, the relay
 * counted as late); a filter is honoured; every flow of n2's own ring since the stream started
 * came through the relay; n1 killed is unavailable (stream and ServerStatus) and, restarted,
 * comes back with its new flows; `membrane observe --server` reads the relay.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { describe, test } from "node:test";
import { HubbleClient } from "../../src/observe/hubble/client.js";
import type { JsonObject } from "../../src/observe/hubble/json.js";
import { skipWithoutEtcd } from "../../src/lab/etcd.js";
import { MEMBRANE_BIN, startLabCluster, type LabCluster } from "../../src/lab/cluster.js";
import { applyAndWait, createEndpoint, waitRemote } from "../../src/lab/cluster-api.js";
import { Probe } from "../../src/probe/probe.js";
import { rootSkipReason } from "../datapath/harness.js";
import { until } from "../support/until.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

const flowOf = (j: JsonObject): JsonObject | undefined => j["flow"] as JsonObject | undefined;
const statusIs = (j: JsonObject, state: string, node: string): boolean => {
  const s = j["node_status"] as { state_change?: string; node_names?: string[] } | undefined;
  return s?.state_change === state && (s.node_names ?? []).includes(node);
};

describe("membrane relay over a lab cluster (root)", { skip }, () => {
  test("two nodes' flows through the relay in time order; a filter; nothing of n2's ring missing; n1 killed is unavailable and comes back", async () => {
    const prefix = `hrl${randomBytes(3).toString("hex").slice(0, 4)}`;
    let lab: LabCluster | undefined;
    let relay: ChildProcess | undefined;
    let relayErr = "";
    const probes: Probe[] = [];
    const ac = new AbortController();
    let client: HubbleClient | undefined;
    let stream: Promise<void> | undefined;
    try {
      lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 5 });
      const [n1, n2] = lab.nodes;
      assert.ok(n1 && n2);
      const socket = join(lab.dir, "relay.sock");
      relay = spawn(
        process.execPath,
        [MEMBRANE_BIN, "relay", "--cluster-store", lab.clusterStore, "--socket", socket].concat([
          "--sort-window",
          "500",
          "--health-interval",
          "200",
          "--log-level",
          "info",
        ]),
        { stdio: ["ignore", "ignore", "pipe"], detached: true },
      );
      relay.stderr?.on("data", (d: Buffer) => (relayErr = (relayErr + d.toString()).slice(-65536)));
      client = new HubbleClient(`unix:${socket}`);
      const c = client;
      await until(
        "the relay connected to both agents",
        async () => (await c.serverStatus())["num_connected_nodes"] === 2,
        { ms: 30_000, retryErrors: true },
      );

      const [s1, c1, s2, c2] = [
        await createEndpoint(n1, "s1", { app: "server" }),
        await createEndpoint(n1, "c1", { app: "client" }),
        await createEndpoint(n2, "s2", { app: "server" }),
        await createEndpoint(n2, "c2", { app: "client" }),
      ];
      const [ps1, pc1, ps2, pc2] = [s1, c1, s2, c2].map((e) => Probe.start(e.netns));
      probes.push(ps1!, pc1!, ps2!, pc2!);
      await ps1!.listen("tcp", 80);
      await ps2!.listen("tcp", 80);
      await applyAndWait(n1, POLICY, "server.yaml");
      await waitRemote(n1, [s2.ipv4, c2.ipv4]);
      await waitRemote(n2, [s1.ipv4, c1.ipv4]);

      const got: JsonObject[] = [];
      const followStart = Date.now();
      stream = c.getFlows({ filter: {}, follow: true }, (j) => got.push(j), ac.signal);
      await until("the stream's first node_status", () => got.length > 0, { ms: 30_000, retryErrors: true });
      for (let k = 0; k < 3; k++) {
        assert.equal(await pc1!.tcp(s2.ipv4, 80, 2000), "ok", "c1 (n1) -> s2 (n2):80");
        assert.equal(await pc2!.tcp(s1.ipv4, 80, 2000), "ok", "c2 (n2) -> s1 (n1):80");
        assert.notEqual(await pc1!.tcp(s2.ipv4, 8080, 300), "ok", "c1 -> s2:8080 dropped");
      }
      const nodesSeen = (): Set<unknown> => new Set(got.filter(flowOf).map((j) => j["node_name"]));
      await until(
        "flows of both nodes through the relay",
        () => nodesSeen().has("n1") && nodesSeen().has("n2"),
        {
          ms: 30_000,
          detail: () => `${JSON.stringify(got).slice(0, 3000)}\nrelay: ${relayErr.slice(-3000)}`,
          retryErrors: true,
        },
      );
      await until(
        "n2's drop through the relay",
        () => got.some((j) => flowOf(j)?.["verdict"] === "DROPPED" && j["node_name"] === "n2"),
        { ms: 30_000, retryErrors: true },
      );

      // A filter goes to the agents: only drops come back.
      const drops: JsonObject[] = [];
      await c.getFlows({ filter: { allowlist: [{ verdict: ["DROPPED"] }] }, follow: false }, (j) =>
        drops.push(j),
      );
      assert.ok(drops.filter(flowOf).length > 0);
      assert.ok(
        drops.filter(flowOf).every((j) => flowOf(j)?.["verdict"] === "DROPPED"),
        JSON.stringify(drops),
      );

      // Nothing of n2's own ring since the stream started is missing from the relay's stream.
      await sleep(700); // the relay's sort window
      const direct = new HubbleClient(`unix:${join(dirname(n2.socket), "hubble.sock")}`);
      const own: JsonObject[] = [];
      await direct.getFlows({ filter: {}, follow: false, since: followStart }, (j) => own.push(j));
      direct.close();
      const relayed = new Set(got.filter(flowOf).map((j) => flowOf(j)?.["uuid"]));
      const missing = own.filter(flowOf).filter((j) => !relayed.has(flowOf(j)?.["uuid"]));
      assert.ok(own.filter(flowOf).length > 0);
      assert.deepEqual(missing, [], "n2's flows the relay did not pass on");

      // n1 dies: unavailable in the stream and in ServerStatus; restarted, it is back with new flows.
      await lab.killNode("n1");
      await until(
        "n1 unavailable in the stream",
        () => got.some((j) => statusIs(j, "NODE_UNAVAILABLE", "n1")),
        { ms: 30_000, retryErrors: true },
      );
      const st = await c.serverStatus();
      assert.equal(st["num_unavailable_nodes"], 1);
      assert.deepEqual(st["unavailable_nodes"], ["n1"]);
      assert.equal(st["num_connected_nodes"], 1);
      await lab.restartNode("n1");
      await until(
        "n1 connected again in the stream",
        () => got.some((j) => statusIs(j, "NODE_CONNECTED", "n1")),
        { ms: 60_000, retryErrors: true },
      );
      const back = got.length;
      await until(
        "a flow of the restarted n1",
        async () => {
          await pc2!.tcp(s1.ipv4, 80, 1000);
          return got.slice(back).some((j) => flowOf(j) !== undefined && j["node_name"] === "n1");
        },
        { ms: 30_000, retryErrors: true },
      );

      // `membrane observe --server` reads the relay.
      const cli = spawnSync(
        process.execPath,
        [MEMBRANE_BIN, "observe", "--server", `unix:${socket}`, "--last", "5", "-o", "json"],
        {
          encoding: "utf8",
          timeout: 30_000,
        },
      );
      assert.equal(cli.status, 0, cli.stderr);
      const lines = cli.stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as JsonObject);
      assert.equal(lines.filter(flowOf).length, 5);

      // In time order, except what the relay counted as late (its counters, logged when it stops).
      ac.abort();
      await stream;
      stream = undefined;
      const times = got.filter(flowOf).map((j) => Date.parse(j["time"] as string));
      const outOfOrder = times.filter((t, i) => i > 0 && t < (times[i - 1] as number)).length;
      const exited = new Promise((r) => relay?.once("exit", r));
      process.kill(relay.pid as number, "SIGTERM");
      await exited;
      const counters = relayErr
        .split("\n")
        .filter((l) => l.includes("relay merge counters"))
        .map((l) => (JSON.parse(l) as { merge: { late: number; pushed: number } }).merge)
        .pop();
      assert.ok(counters, relayErr.slice(-2000));
      assert.ok(
        outOfOrder <= counters.late,
        `${outOfOrder} flows out of order, ${counters.late} counted late`,
      );
    } finally {
      ac.abort();
      await stream?.catch(() => undefined);
      client?.close();
      for (const p of probes) p.stop();
      if (relay?.pid !== undefined)
        try {
          process.kill(-relay.pid, "SIGKILL");
        } catch {
          // gone
        }
      await lab?.stop();
    }
  });
});
