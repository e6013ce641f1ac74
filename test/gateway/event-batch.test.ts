/**
 * The gateway process sends its request events to the agent one message per event-loop turn
 * (event-batch.ts): every event once, in order, none held past its turn.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setImmediate as turn } from "node:timers/promises";
import { batchEvents, MAX_GATEWAY_EVENTS } from "../../src/gateway/event-batch.js";
import type { GatewayEvent } from "../../src/gateway/exchange.js";

const ev = (status: number): GatewayEvent => ({
  listener: "10.0.0.1:80",
  client: { address: "10.0.0.9", port: 40000 },
  status,
  latencyMs: 0.1,
});

describe("gateway events: one message per loop turn", () => {
  test("the events of one turn go in one message, in order; the next turn's in the next", async () => {
    const sent: number[][] = [];
    const push = batchEvents((events) => sent.push(events.map((e) => e.status)));
    push(ev(200));
    push(ev(404));
    push(ev(503));
    assert.deepEqual(sent, [], "nothing is sent before the turn ends");
    await turn();
    assert.deepEqual(sent, [[200, 404, 503]]);
    push(ev(201));
    await turn();
    assert.deepEqual(sent, [[200, 404, 503], [201]]);
    await turn();
    assert.equal(sent.length, 2, "no empty message when a turn had no event");
  });

  test("1,000 events over turns: each sent once, in order", async () => {
    const got: number[] = [];
    const push = batchEvents((events) => got.push(...events.map((e) => e.status)));
    for (let i = 0; i < 1000; i++) {
      push(ev(i));
      if (i % 7 === 0) await turn();
    }
    await turn();
    assert.deepEqual(
      got,
      Array.from({ length: 1000 }, (_, i) => i),
    );
  });

  test("a burst in one turn goes in messages of at most MAX_GATEWAY_EVENTS (the runner refuses longer), in order", async () => {
    const sent: number[][] = [];
    const push = batchEvents((events) => sent.push(events.map((e) => e.status)));
    for (let i = 0; i < 1200; i++) push(ev(i));
    await turn();
    assert.deepEqual(
      sent.map((m) => m.length),
      [MAX_GATEWAY_EVENTS, MAX_GATEWAY_EVENTS, 1200 - 2 * MAX_GATEWAY_EVENTS],
    );
    assert.deepEqual(
      sent.flat(),
      Array.from({ length: 1200 }, (_, i) => i),
    );
  });
});
