/**
 * Background work after a restart (the adopted endpoints' check, the kernel check) gives way
 * to changes: WorkQueue.quiet() resolves only once nothing has been queued or running for a
 * moment, so a client applying file after file is not interleaved with background slices;
 * yieldToWork() bounds the wait, so background work still gets done on a busy agent.
 * No durations asserted: only the order of events.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { WorkQueue } from "../../src/agent/work-queue.js";

const log = pino({ level: "silent" });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe("WorkQueue.quiet and yieldToWork", () => {
  test("quiet waits out a burst: work queued right after other work ended runs before the background goes on", async () => {
    const q = new WorkQueue(log);
    const events: string[] = [];
    await q.run(async () => void events.push("apply 1"));
    // The queue has just become idle: a background slice asks whether it may go on.
    const bg = q.quiet(200).then(() => events.push("background"));
    await tick();
    await tick();
    // The client's next request, a moment later (the background must not have run meanwhile).
    await q.run(async () => void events.push("apply 2"));
    await bg;
    assert.deepEqual(events, ["apply 1", "apply 2", "background"]);
  });

  test("quiet resolves at once on a queue that has been idle (no delay when the agent does nothing)", async () => {
    const q = new WorkQueue(log);
    const events: string[] = [];
    const bg = q.quiet(600_000).then(() => events.push("background"));
    await tick();
    assert.deepEqual(events, ["background"]);
    await bg;
  });

  test("yieldToWork is bounded: background work goes on while the queue stays busy", async () => {
    const q = new WorkQueue(log);
    let release = (): void => undefined;
    const held = q.run(() => new Promise<void>((r) => (release = r)));
    const alive = setInterval(() => undefined, 1000); // the held work keeps nothing alive by itself
    try {
      await q.yieldToWork(20); // the queue is busy throughout: returns at the bound
      assert.equal(q.busy, true);
    } finally {
      clearInterval(alive);
      release();
    }
    await held;
  });
});
