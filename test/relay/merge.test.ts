/** The relay's time-ordered merge within a window (merge.ts): order, window, bound, late flows. */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { TimeMerger } from "../../src/relay/merge.js";

interface Item {
  timeMs: number;
  id: string;
}

function merger(windowMs: number, maxBuffered: number): { m: TimeMerger<Item>; out: string[] } {
  const out: string[] = [];
  return { m: new TimeMerger<Item>({ windowMs, maxBuffered, emit: (i) => out.push(i.id) }), out };
}

describe("TimeMerger", () => {
  test("holds records for the window and emits them oldest first, equal times in arrival order", () => {
    const { m, out } = merger(100, 100);
    m.push({ timeMs: 1000, id: "a1" });
    m.push({ timeMs: 990, id: "b1" });
    m.push({ timeMs: 1000, id: "c1" });
    m.tick(1050);
    assert.deepEqual(out, [], "nothing is older than the window yet");
    m.tick(1095);
    assert.deepEqual(out, ["b1"]);
    m.tick(1100);
    assert.deepEqual(out, ["b1", "a1", "c1"]);
    assert.deepEqual(m.stats(), { pushed: 3, emitted: 3, buffered: 0, late: 0, overflow: 0 });
  });

  test("a record older than one already emitted is passed on at once and counted late; so is one without a time", () => {
    const { m, out } = merger(10, 100);
    m.push({ timeMs: 500, id: "new" });
    m.tick(600);
    m.push({ timeMs: 100, id: "old" });
    m.push({ timeMs: Number.NaN, id: "none" });
    assert.deepEqual(out, ["new", "old", "none"]);
    assert.equal(m.stats().late, 2);
  });

  test("a full heap emits its oldest early (counted as overflow), nothing is dropped", () => {
    const { m, out } = merger(1_000_000, 3);
    for (let i = 1; i <= 10; i++) m.push({ timeMs: i, id: String(i) });
    assert.equal(m.stats().overflow, 7);
    assert.deepEqual(out, ["1", "2", "3", "4", "5", "6", "7"]);
    assert.equal(m.stats().buffered, 3);
    m.flush();
    assert.equal(out.length, 10);
    const s = m.stats();
    assert.equal(s.pushed, s.emitted);
  });

  test("random interleavings of sorted streams come out sorted when the window covers the skew", () => {
    let seed = 7;
    const rnd = (n: number): number => (seed = (seed * 1103515245 + 12345) >>> 0) % n;
    for (let round = 0; round < 50; round++) {
      const out: number[] = [];
      const m = new TimeMerger<Item>({ windowMs: 50, maxBuffered: 10_000, emit: (i) => out.push(i.timeMs) });
      const streams = [0, 1, 2].map(() => {
        let t = 0;
        return Array.from({ length: 100 }, () => (t += rnd(10)));
      });
      // Each stream arrives in order, each record at most 40 ms after its time.
      const arrivals = streams.flatMap((s) => s.map((t) => ({ t, at: t + rnd(40) })));
      arrivals.sort((a, b) => a.at - b.at);
      for (const a of arrivals) {
        m.tick(a.at);
        m.push({ timeMs: a.t, id: "" });
      }
      m.flush();
      assert.deepEqual(
        out,
        [...out].sort((a, b) => a - b),
      );
      assert.equal(m.stats().late, 0);
    }
  });
});
