/**
 * settleHeap (heap-settle.ts): what the agent built during start() leaves the young
 * generation before the API answers, so that the first requests' scavenges do not copy it.
 */
import assert from "node:assert/strict";
import { getHeapSpaceStatistics } from "node:v8";
import { describe, test } from "node:test";
import { settleHeap } from "../../src/agent/heap-settle.js";

const newSpaceUsed = (): number =>
  getHeapSpaceStatistics().find((s) => s.space_name === "new_space")?.space_used_size ?? 0;

describe("settleHeap", () => {
  test("state built just before is promoted: the young generation is (nearly) empty after it", () => {
    const kept: { i: number; s: string }[] = [];
    for (let i = 0; i < 100_000; i++) kept.push({ i, s: `entry ${i}` });
    const before = newSpaceUsed();
    assert.equal(settleHeap(), true, "V8's gc is reachable");
    const after = newSpaceUsed();
    assert.ok(after < before / 4, `young generation ${before} -> ${after} bytes`);
    assert.equal(kept[99_999]?.s, "entry 99999"); // what lives on is kept, of course
  });
});
