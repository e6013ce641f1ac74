/**
 * The traffic bench's idleness check (bench/settle.ts): a helper process that only waits (the
 * endpoint pool's idle `ip -batch`) is not work; one that uses CPU is. Before this, the pool's four
 * waiting processes kept every traffic window waiting for its 120 s safety net.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { BUSY, commandsWorked, descendants } from "../../bench/settle.js";

test("a child that waits on its input is idle; a child that spins is working", async () => {
  const idle = spawn("sh", ["-c", "read x"], { stdio: ["pipe", "ignore", "ignore"] });
  const spin = spawn("sh", ["-c", "while :; do :; done"], { stdio: "ignore" });
  try {
    await sleep(300); // both started and exec'd
    type Seen = ReturnType<typeof descendants>;
    const pids = (m: Seen, pid: number | undefined): Seen => new Map([...m].filter(([p]) => p === pid));
    const d0 = descendants(BUSY);
    assert.ok(d0.has(idle.pid as number) && d0.has(spin.pid as number), "both children are seen");
    await sleep(1000);
    const d1 = descendants(BUSY);
    assert.equal(commandsWorked(pids(d0, idle.pid), pids(d1, idle.pid)), false);
    assert.equal(commandsWorked(pids(d0, spin.pid), pids(d1, spin.pid)), true);
    // A process that appeared during the window counts as work.
    assert.equal(commandsWorked(new Map(), pids(d1, idle.pid)), true);
  } finally {
    idle.kill("SIGKILL");
    spin.kill("SIGKILL");
  }
});
