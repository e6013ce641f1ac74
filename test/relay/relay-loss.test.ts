/**
 * The relay loses nothing it does not count (issue 14, the relay stall): a node whose API goes
 * away mid-stream does not stop the others; while it is away its ring is lapped; when it comes
 * back, the relay resumes its stream from the last time seen and the agent's ring reports what it
 * overwrote meanwhile as Hubble's lost_events. Per node: flows received + events counted lost
 * >= flows pushed, and every flow still held arrives. No root: the agent's HubbleServer over a
 * ring per node, on unix sockets (harness.ts).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { HubbleClient } from "../../src/observe/hubble/client.js";
import type { JsonObject } from "../../src/observe/hubble/json.js";
import { FlowRing } from "../../src/observe/ring.js";
import { startRelay, type RunningRelay } from "../../src/relay/relay.js";
import { fakeNodes, flowAt, type FakeNodes } from "./harness.js";
import { until } from "../support/until.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe("the ring counts what a resumed reader missed", () => {
  test("follow({since, resumed}) starts with lost_events for what was overwritten at or after since", async () => {
    const ring = new FlowRing({ capacity: 10, nodeName: "n1" });
    const t0 = Date.parse("2026-01-01T00:00:00Z");
    for (let i = 0; i < 35; i++) ring.pushFlow(flowAt(t0 + i, "n1"), t0 + i);
    assert.equal(ring.lostSince(t0 + 20), 5, "records 20..24 were overwritten");
    assert.equal(ring.lostSince(t0 + 30), 0, "nothing after the oldest held was lost");
    const ac = new AbortController();
    const got: string[] = [];
    for await (const r of ring.follow({ since: t0 + 20, resumed: true, signal: ac.signal })) {
      got.push("lost_events" in r ? `lost ${r.lost_events.num_events_lost}` : r.time);
      if (got.length === 11) ac.abort();
    }
    assert.equal(got[0], "lost 5");
    assert.equal(got.length, 11, "the lost record, then the 10 held");
    // A reader that did not resume (hubble observe --since) gets Hubble's stream: no such record.
    const plain = ring.read({ since: t0 + 20 });
    assert.ok(plain.every((r) => "flow" in r));
  });
});

describe("relay: a node away mid-stream (no root)", () => {
  let fake: FakeNodes;
  let relay: RunningRelay;
  let addr: string;

  before(async () => {
    fake = await fakeNodes(2, 200, "hhb-loss-");
    const socket = join(fake.dir, "relay.sock");
    relay = await startRelay({
      nodes: { peers: fake.peers },
      socketPath: socket,
      merge: { windowMs: 50, maxBuffered: 10_000 },
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

  test("the others keep flowing; the node's lapped ring is counted when it comes back; nothing unaccounted", async () => {
    const [n1, n2] = fake.nodes;
    assert.ok(n1 && n2);
    const c = new HubbleClient(addr);
    const ac = new AbortController();
    const got: JsonObject[] = [];
    const done = c.getFlows({ filter: {}, follow: true }, (j) => got.push(j), ac.signal);
    const pushed = { n1: 0, n2: 0 };
    const push = (n: typeof n1, k: number): void => {
      for (let i = 0; i < k; i++) n.ring.pushFlow(flowAt(Date.now(), n.name));
      pushed[n.name as "n1" | "n2"] += k;
    };
    const count = (node: string): { flows: number; lost: number } => {
      let flows = 0;
      let lost = 0;
      for (const j of got) {
        if (j["node_name"] !== node) continue;
        if (j["flow"] !== undefined) flows++;
        const l = j["lost_events"] as { num_events_lost?: string } | undefined;
        if (l !== undefined) lost += Number(l.num_events_lost ?? 0);
      }
      return { flows, lost };
    };
    try {
      await until("the first node_status", () => got.length > 0);
      await sleep(200);
      push(n1, 50);
      push(n2, 50);
      await until("100 flows", () => count("n1").flows === 50 && count("n2").flows === 50);
      await n2.stop();
      await until("n2 unavailable", () =>
        got.some(
          (j) =>
            (j["node_status"] as { state_change?: string } | undefined)?.state_change === "NODE_UNAVAILABLE",
        ),
      );
      // n2 keeps recording while its API is away: 3 rings' worth, the ring is lapped twice.
      push(n2, 600);
      // The others are not held up by it.
      push(n1, 100);
      await until("n1's flows during n2's outage", () => count("n1").flows === 150);
      await n2.start();
      // The resume is by time (Hubble's `since`), so the gap counted may also hold the flows of the
      // last millisecond the relay had seen (up to the 50 before the outage): wait for the flows
      // themselves, not for flows + lost to reach what was pushed (that sum can be reached early).
      await until(
        "n2 back: its held flows arrived, its gap counted",
        () => count("n2").flows >= 50 + 200 && count("n2").lost >= 400,
      ).catch(() => undefined);
      const n2c = count("n2");
      assert.ok(n2c.lost >= 400, `n2 lost at least what was overwritten (${JSON.stringify(n2c)})`);
      assert.ok(n2c.lost <= 450, `n2's gap counts at most the flows of the resume's millisecond again (${JSON.stringify(n2c)})`); // prettier-ignore
      assert.ok(n2c.flows >= 50 + 200, `every flow n2 still held arrived (${JSON.stringify(n2c)})`);
      // After the outage the stream goes on as before.
      push(n2, 20);
      await until("n2's new flows", () => count("n2").flows + count("n2").lost >= pushed.n2);
      assert.deepEqual(count("n1"), { flows: pushed.n1, lost: 0 });
    } finally {
      ac.abort();
      await done;
      c.close();
    }
  });
});
