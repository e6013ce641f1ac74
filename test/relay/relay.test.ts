/**
 * The relay over three nodes' Observer APIs (the agent's HubbleServer over a ring per node, on
 * unix sockets: no root): history and follow merged in time order, number over the whole
 * cluster, a filter forwarded, node_status events and ServerStatus for a node that stops and
 * comes back (with what it recorded meanwhile), a late flow passed through and counted.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { HubbleClient } from "../../src/observe/hubble/client.js";
import type { JsonObject } from "../../src/observe/hubble/json.js";
import type { ObserveRequest } from "../../src/observe/flags.js";
import { startRelay, type RunningRelay } from "../../src/relay/relay.js";
import { fakeNodes, flowAt, type FakeNodes } from "./harness.js";
import { until } from "../support/until.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const flowOf = (j: JsonObject): JsonObject | undefined => j["flow"] as JsonObject | undefined;
const statusOf = (j: JsonObject): { state_change: string; node_names: string[] } | undefined =>
  j["node_status"] as { state_change: string; node_names: string[] } | undefined;

describe("relay over three nodes' Observer APIs (unix sockets)", () => {
  let fake: FakeNodes;
  let relay: RunningRelay;
  let addr: string;
  const t0 = Date.parse("2026-01-01T00:00:00Z");

  before(async () => {
    fake = await fakeNodes(3, 1000);
    // History: node i holds the flows at t0 + 3k + i (interleaved across the nodes).
    for (let k = 0; k < 10; k++)
      for (const [i, n] of fake.nodes.entries())
        n.ring.pushFlow(flowAt(t0 + (3 * k + i) * 1000, n.name, k % 5 === 0 ? "DROPPED" : "FORWARDED"));
    const socket = join(fake.dir, "relay.sock");
    relay = await startRelay({
      nodes: { peers: fake.peers },
      socketPath: socket,
      merge: { windowMs: 50, maxBuffered: 1000 },
      healthMs: 100,
      version: "test",
      logger: pino({ level: "silent" }),
    });
    addr = `unix:${socket}`;
  });

  after(async () => {
    await relay?.stop();
    await fake?.destroy();
  });

  const history = async (req: Partial<ObserveRequest> = {}): Promise<JsonObject[]> => {
    const c = new HubbleClient(addr);
    const out: JsonObject[] = [];
    try {
      await c.getFlows({ filter: {}, follow: false, ...req }, (j) => out.push(j));
    } finally {
      c.close();
    }
    return out;
  };

  test("history: every node's flows in time order, a node_status event naming the connected nodes first", async () => {
    const got = await history();
    assert.deepEqual(statusOf(got[0] ?? {}), {
      state_change: "NODE_CONNECTED",
      node_names: ["n1", "n2", "n3"],
    });
    const times = got.flatMap((j) => (flowOf(j) ? [Date.parse(j["time"] as string)] : []));
    assert.equal(times.length, 30);
    assert.deepEqual(
      times,
      [...times].sort((a, b) => a - b),
    );
    const nodes = got.flatMap((j) => (flowOf(j) ? [j["node_name"]] : []));
    assert.deepEqual(nodes.slice(0, 6), ["n1", "n2", "n3", "n1", "n2", "n3"]);
  });

  test("history: number is the last N of the cluster; a filter is forwarded to the agents", async () => {
    const last = (await history({ number: 4 })).filter(flowOf);
    assert.deepEqual(
      last.map((j) => Date.parse(j["time"] as string)),
      [26, 27, 28, 29].map((s) => t0 + s * 1000),
    );
    const drops = (await history({ filter: { allowlist: [{ verdict: ["DROPPED"] }] } })).filter(flowOf);
    assert.equal(drops.length, 6); // k = 0 and 5 on each of 3 nodes
    assert.ok(drops.every((j) => flowOf(j)?.["verdict"] === "DROPPED"));
    await assert.rejects(
      history({ filter: { allowlist: [{ verdict: ["SIDEWAYS" as "DROPPED"] }] } }),
      /verdict|SIDEWAYS/,
    );
  });

  test("GetNodes, GetNamespaces and ServerStatus cover every node", async () => {
    const c = new HubbleClient(addr);
    try {
      const st = await c.serverStatus();
      assert.equal(st["num_connected_nodes"], 3);
      assert.equal(st["num_unavailable_nodes"] ?? 0, 0);
      assert.equal(st["num_flows"], "30");
      const nodes = (await c.getNodes())["nodes"] as JsonObject[];
      assert.deepEqual(
        nodes.map((n) => [n["name"], n["state"], n["num_flows"]]),
        [
          ["n1", "NODE_CONNECTED", "10"],
          ["n2", "NODE_CONNECTED", "10"],
          ["n3", "NODE_CONNECTED", "10"],
        ],
      );
      const ns = (await c.getNamespaces())["namespaces"] as JsonObject[];
      assert.deepEqual(
        ns.map((n) => n["namespace"]),
        ["default", "prod"],
      );
    } finally {
      c.close();
    }
  });

  test("follow: live flows in time order; a stopped node is unavailable (stream and ServerStatus), comes back with what it recorded meanwhile; a late flow passes and is counted", async () => {
    const c = new HubbleClient(addr);
    const got: JsonObject[] = [];
    const ac = new AbortController();
    const done = c.getFlows({ filter: {}, follow: true }, (j) => got.push(j), ac.signal);
    const uuids = (): Set<unknown> => new Set(got.flatMap((j) => (flowOf(j) ? [flowOf(j)?.["uuid"]] : [])));
    const pushed: string[] = [];
    const push = (n: (typeof fake.nodes)[number], ms = Date.now()): void => {
      const f = flowAt(ms, n.name);
      pushed.push(f.uuid as string);
      n.ring.pushFlow(f);
    };
    try {
      await until("the first node_status", () => got.length > 0);
      for (let k = 0; k < 30; k++) {
        for (const n of fake.nodes) push(n);
        await sleep(2);
      }
      await until("30 flows of each node", () => pushed.every((u) => uuids().has(u)));
      const live = got.filter(flowOf).map((j) => Date.parse(j["time"] as string));
      const outOfOrder = live.filter((t, i) => i > 0 && t < (live[i - 1] as number)).length;
      assert.ok(
        outOfOrder <= relay.stats().late,
        `${outOfOrder} out of order, ${relay.stats().late} counted late`,
      );

      // n2 stops: unavailable in the stream and in ServerStatus.
      const n2 = fake.nodes[1]!;
      await n2.stop();
      await until("n2 unavailable in the stream", () =>
        got.some(
          (j) => statusOf(j)?.state_change === "NODE_UNAVAILABLE" && statusOf(j)?.node_names.includes("n2"),
        ),
      );
      const st = await c.serverStatus();
      assert.equal(st["num_connected_nodes"], 2);
      assert.equal(st["num_unavailable_nodes"], 1);
      assert.deepEqual(st["unavailable_nodes"], ["n2"]);
      const nodes = (await c.getNodes())["nodes"] as JsonObject[];
      assert.equal(nodes.find((n) => n["name"] === "n2")?.["state"], "NODE_UNAVAILABLE");

      // What n2 records while the relay cannot reach it arrives once it is back (exactly once).
      for (let k = 0; k < 5; k++) push(n2);
      push(fake.nodes[0]!);
      await n2.start();
      await until("n2 connected again", () =>
        got.some(
          (j) => statusOf(j)?.state_change === "NODE_CONNECTED" && statusOf(j)?.node_names.includes("n2"),
        ),
      );
      push(n2);
      await until("n2's flows from its outage", () => pushed.every((u) => uuids().has(u)));
      const all = got.filter(flowOf).map((j) => flowOf(j)?.["uuid"]);
      assert.equal(all.length, new Set(all).size, "no flow twice");

      // A flow 10 s older than what was sent: passed on at once, out of order, and counted.
      const lateBefore = relay.stats().late;
      push(fake.nodes[2]!, Date.now() - 10_000);
      await until("the late flow", () => pushed.every((u) => uuids().has(u)));
      assert.equal(relay.stats().late, lateBefore + 1);
      assert.equal(got.filter(flowOf).length, pushed.length, "every flow pushed arrived");
    } finally {
      ac.abort();
      await done.catch(() => undefined);
      c.close();
    }
  });
});
