/**
 * The traffic benchmark's statistics (bench/traffic-stats.ts): ABBA order and
 * paired ratios, so that a drift of the machine's load between rounds does not
 * pass for a cost of the table.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pairRatios, ratioSummary, roundOrder, spreadPct, type Window } from "../../bench/traffic-stats.js";

const w = (round: number, cond: string, rr: number, gbps?: number): Window => ({
  round,
  cond,
  rr,
  cpuUsPerRt: 1000 / rr,
  agentCpuMs: 0,
  load1m: 0,
  ...(gbps !== undefined ? { gbps } : {}),
});

describe("traffic benchmark statistics", () => {
  test("rounds alternate the order of the conditions (ABBA)", () => {
    const order = [0, 1, 2, 3].map((r) => roundOrder(["none", "membrane"], r).join(","));
    assert.deepEqual(order, ["none,membrane", "membrane,none", "none,membrane", "membrane,none"]);
  });

  test("each ratio compares the two windows of one round, not medians of all windows", () => {
    // The machine got twice as fast after round 1: medians of all windows would mix the two halves.
    const ws = [w(0, "none", 100), w(0, "membrane", 90), w(1, "membrane", 180), w(1, "none", 200)];
    assert.deepEqual(
      pairRatios(ws, "none", "membrane", (x) => x.rr),
      [0.9, 0.9],
    );
  });

  test("a cost (lower is better) is inverted, so that every ratio reads membrane relative to none", () => {
    const ws = [w(0, "none", 100), w(0, "membrane", 80)];
    // none 10 us per round trip, membrane 12.5: membrane does 0.8 of none's work per CPU-second.
    assert.deepEqual(
      pairRatios(ws, "none", "membrane", (x) => x.cpuUsPerRt, false),
      [0.8],
    );
  });

  test("a round missing a value (no iperf3) gives no ratio", () => {
    const ws = [w(0, "none", 100, 10), w(0, "membrane", 90), w(1, "none", 100, 10), w(1, "membrane", 90, 9)];
    assert.deepEqual(
      pairRatios(ws, "none", "membrane", (x) => x.gbps),
      [0.9],
    );
  });

  test("the summary is the median of the pair ratios with their min..max spread", () => {
    assert.deepEqual(ratioSummary([0.9, 1.2, 0.95]), {
      ratio: 0.95,
      spread: [0.9, 1.2],
      pairs: [0.9, 1.2, 0.95],
    });
    assert.equal(spreadPct([80, 100, 120]), 40);
  });
});
