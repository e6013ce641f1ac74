import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Flow, FlowRecord } from "../../src/observe/flow.js";
import { FlowRing } from "../../src/observe/ring.js";
import { SAMPLES } from "./samples.js";

const base = SAMPLES.deny!;
const T0 = Date.parse("2024-11-23T12:00:00Z");
const flowAt = (i: number): Flow => ({
  ...base,
  time: new Date(T0 + i * 1000).toISOString(),
  Summary: `#${i}`,
});
const names = (rs: FlowRecord[]): string[] =>
  rs.map((r) =>
    "flow" in r ? (r.flow.Summary ?? "") : `lost:${r.lost_events.source}:${r.lost_events.num_events_lost}`,
  );
function filled(capacity: number, n: number): FlowRing {
  const r = new FlowRing({ capacity, nodeName: "node1" });
  for (let i = 1; i <= n; i++) r.pushFlow(flowAt(i));
  return r;
}

describe("FlowRing", () => {
  const reads: {
    name: string;
    ring: () => FlowRing;
    opts: Parameters<FlowRing["read"]>[0];
    want: string[];
  }[] = [
    {
      name: "read gives everything held, oldest first",
      ring: () => filled(5, 3),
      opts: {},
      want: ["#1", "#2", "#3"],
    },
    {
      name: "a full ring holds the newest `capacity` records",
      ring: () => filled(3, 7),
      opts: {},
      want: ["#5", "#6", "#7"],
    },
    { name: "last N", ring: () => filled(10, 7), opts: { number: 2 }, want: ["#6", "#7"] },
    {
      name: "since is inclusive",
      ring: () => filled(10, 7),
      opts: { since: T0 + 5000 },
      want: ["#5", "#6", "#7"],
    },
    { name: "until is inclusive", ring: () => filled(10, 7), opts: { until: T0 + 2000 }, want: ["#1", "#2"] },
    {
      name: "since + until + last N",
      ring: () => filled(10, 7),
      opts: { since: T0 + 2000, until: T0 + 6000, number: 2 },
      want: ["#5", "#6"],
    },
    {
      name: "last N counts matching records only",
      ring: () => filled(10, 7),
      opts: { number: 2, filter: (f) => Number(f.Summary?.slice(1)) % 2 === 1 },
      want: ["#5", "#7"],
    },
  ];
  for (const c of reads) test(c.name, () => assert.deepEqual(names(c.ring().read(c.opts)), c.want));

  test("upstream losses appear in the stream and in the stats", () => {
    const r = filled(10, 2);
    r.pushLost("PERF_EVENT_RING_BUFFER", 17, T0 + 2500);
    r.pushFlow(flowAt(3));
    assert.deepEqual(names(r.read()), ["#1", "#2", "lost:PERF_EVENT_RING_BUFFER:17", "#3"]);
    const lost = r.read()[2];
    assert.deepEqual(lost, {
      lost_events: { source: "PERF_EVENT_RING_BUFFER", num_events_lost: 17 },
      node_name: "node1",
      time: "2024-11-23T12:00:02.500Z",
    });
    assert.deepEqual(r.stats(), {
      capacity: 10,
      size: 4,
      written: 4,
      overwritten: 0,
      lostUpstream: 17,
      lostByFollowers: 0,
    });
  });

  test("records carry the ring's node name when the flow has none", () => {
    const r = new FlowRing({ capacity: 2, nodeName: "n9" });
    const { node_name: _n, ...f } = base;
    r.pushFlow(f);
    assert.deepEqual(r.read()[0], { flow: f, node_name: "n9", time: base.time });
  });

  test("follow gives the last N, then new records as they come, and ends on abort", async () => {
    const r = filled(10, 5);
    const ac = new AbortController();
    const got: string[] = [];
    const done = (async () => {
      for await (const rec of r.follow({ number: 2, signal: ac.signal })) got.push(...names([rec]));
    })();
    await new Promise((res) => setImmediate(res));
    r.pushFlow(flowAt(6));
    r.pushFlow(flowAt(7));
    await new Promise((res) => setImmediate(res));
    ac.abort();
    await done;
    assert.deepEqual(got, ["#4", "#5", "#6", "#7"]);
  });

  test("follow without last N or since starts at the next record", async () => {
    const r = filled(10, 5);
    const it = r.follow();
    const p = it.next();
    r.pushFlow(flowAt(6));
    assert.deepEqual(names([(await p).value as FlowRecord]), ["#6"]);
    await it.return(undefined);
  });

  test("records pushed while a follower reads its backlog come after it (a relay resuming with since lost them)", async () => {
    const r = filled(8, 3); // #1..#3
    const it = r.follow({ since: 0 });
    const got: string[] = names([(await it.next()).value as FlowRecord]);
    for (let i = 4; i <= 7; i++) r.pushFlow(flowAt(i)); // while the backlog is being read
    for (let i = 0; i < 6; i++) got.push(...names([(await it.next()).value as FlowRecord]));
    assert.deepEqual(got, ["#1", "#2", "#3", "#4", "#5", "#6", "#7"]);
    await it.return(undefined);
  });

  test("a follower that falls behind gets a HUBBLE_RING_BUFFER lost event with the exact count", async () => {
    const r = filled(4, 0);
    const it = r.follow({});
    const first = it.next();
    r.pushFlow(flowAt(1));
    assert.deepEqual(names([(await first).value as FlowRecord]), ["#1"]);
    for (let i = 2; i <= 11; i++) r.pushFlow(flowAt(i)); // follower is at #2; ring holds #8..#11
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push(...names([(await it.next()).value as FlowRecord]));
    assert.deepEqual(got, ["lost:HUBBLE_RING_BUFFER:6", "#8", "#9", "#10", "#11"]);
    assert.equal(r.stats().lostByFollowers, 6);
    assert.equal(r.stats().overwritten, 7);
    await it.return(undefined);
  });

  test("follow applies the filter to live records but always passes lost events", async () => {
    const r = filled(10, 0);
    const it = r.follow({ filter: (f) => f.Summary === "#2" });
    const p = it.next();
    r.pushFlow(flowAt(1));
    r.pushLost("PERF_EVENT_RING_BUFFER", 3);
    r.pushFlow(flowAt(2));
    assert.deepEqual(names([(await p).value as FlowRecord]), ["lost:PERF_EVENT_RING_BUFFER:3"]);
    assert.deepEqual(names([(await it.next()).value as FlowRecord]), ["#2"]);
    await it.return(undefined);
  });

  test("capacity must be a positive integer", () => {
    assert.throws(() => new FlowRing({ capacity: 0 }), /FlowRing capacity must be a positive integer, got 0/);
  });
});
