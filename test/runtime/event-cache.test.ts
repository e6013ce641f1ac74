/**
 * The event cache (Tetragon's eventcache) and the process cache's lookup by time, without the
 * kernel: a policy event whose process is not known yet is held and goes out with its exec_id
 * once the process records are read past it; bounded in age and size, every event that finally
 * goes without its process is counted (tetragon_event_cache_process_info_errors_total).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pino from "pino";
import { Registry } from "prom-client";
import { RuntimeController } from "../../src/agent/controllers/runtime.js";
import type { RuntimePolicyEvent } from "../../src/runtime/enforce/events.js";
import { EventCache } from "../../src/runtime/event-cache.js";
import type { RuntimeEvent } from "../../src/runtime/events.js";
import { ProcessCache } from "../../src/runtime/process-cache.js";
import type { ExecRecord, ProcessRecord } from "../../src/runtime/source/assemble.js";

function clock(): { now: () => number; at: number } {
  const c = { at: 1000, now: () => c.at };
  return c;
}

function execRecord(pid: number, ktime: bigint, binary: string): ExecRecord {
  return {
    pid,
    ppid: 1,
    uid: 0,
    auid: 4294967295,
    netns: 7,
    cgroup: 1n,
    startBoottime: ktime,
    ktime,
    argv: [binary],
    argsTruncated: false,
    cwd: "/",
    cwdComplete: true,
    binary,
  };
}

describe("event cache: held until the process is known, bounded, counted", () => {
  test("a known pid goes out at once; an unknown one waits for retry and keeps its pid's order", () => {
    const out: [string, boolean][] = [];
    const known = new Set([1]);
    const c = clock();
    const ec = new EventCache<string>({
      known: (pid) => known.has(pid),
      ready: (pid) => known.has(pid),
      release: (e, found) => void out.push([e, found]),
      now: c.now,
    });
    ec.offer(1, 10n, "a");
    ec.offer(2, 11n, "b1");
    ec.offer(2, 12n, "b2");
    assert.deepEqual(out, [["a", true]]);
    ec.retry();
    assert.equal(ec.size, 2, "still unknown: still held");
    known.add(2);
    ec.offer(2, 13n, "b3"); // behind b1, b2 although its pid is known now
    assert.deepEqual(out, [["a", true]]);
    ec.retry();
    assert.deepEqual(out.slice(1), [
      ["b1", true],
      ["b2", true],
      ["b3", true],
    ]);
    assert.deepEqual([ec.size, ec.accesses, ec.missed], [0, 3, 0]);
    ec.drain();
  });

  test("past its age an event goes without its process (counted); beyond the size the oldest does", () => {
    const out: [string, boolean][] = [];
    const c = clock();
    const ec = new EventCache<string>({
      known: () => false,
      ready: () => false,
      release: (e, found) => void out.push([e, found]),
      maxAgeMs: 100,
      maxEvents: 2,
      now: c.now,
    });
    ec.offer(1, 1n, "x");
    c.at += 60;
    ec.offer(2, 2n, "y");
    ec.offer(3, 3n, "z"); // over the size: x goes
    assert.deepEqual(out, [["x", false]]);
    c.at += 50; // y is 50 ms old, x would be 110
    ec.retry();
    assert.deepEqual(out.length, 1);
    c.at += 60; // y 110 ms, z 110 ms
    ec.retry();
    assert.deepEqual(out, [
      ["x", false],
      ["y", false],
      ["z", false],
    ]);
    assert.equal(ec.missed, 3);
    ec.drain();
  });
});

describe("process cache: the image a pid ran at a given time", () => {
  const pc = (): ProcessCache => new ProcessCache({ nodeName: "n", bootNs: 0n, podOf: () => undefined });

  test("before an exec: the fork's image; after: the exec's; after the exit or before the fork: none", () => {
    const c = pc();
    c.seed({
      pid: 1,
      ppid: 0,
      ktime: 1n,
      netns: 7,
      startBoottime: 1n,
      process: {
        exec_id: "init",
        pid: 1,
        uid: 0,
        cwd: "/",
        binary: "/sbin/init",
        arguments: "",
        flags: "procFS",
        start_time: "",
        auid: 0,
      },
    });
    c.fork(50, 1, 100n);
    c.exec(execRecord(50, 200n, "/usr/bin/cat"));
    assert.equal(c.at(50, 150n)?.process.binary, "/sbin/init", "between fork and exec: the clone");
    assert.equal(c.at(50, 150n)?.process.flags, "clone");
    assert.equal(c.at(50, 250n)?.process.binary, "/usr/bin/cat");
    assert.equal(c.at(50, 50n), undefined, "before the fork: another process");
    c.exit(50, 0, 300n);
    assert.equal(c.at(50, 290n)?.process.binary, "/usr/bin/cat", "a kill event read after the exit");
    assert.equal(c.at(50, 310n), undefined, "after the exit: a new holder of the pid, not known yet");
    assert.equal(c.at(50, 0n)?.process.binary, "/usr/bin/cat", "no time: the latest");
  });
});

function policyEvent(pid: number, ktimeNs: bigint): RuntimePolicyEvent {
  return {
    type: "process_kprobe",
    policyName: "watch",
    policyNamespace: undefined,
    functionName: "__x64_sys_openat",
    action: "KPROBE_ACTION_POST",
    signal: undefined,
    pid,
    tid: pid,
    uid: 0,
    comm: "cat",
    netnsInode: 7,
    cgroupId: "1",
    args: [],
    message: undefined,
    tags: [],
    ktimeNs,
    time: new Date(),
  };
}

const kprobes = (rt: RuntimeController): { pid: number; exec_id: string; binary: string }[] =>
  rt
    .read({})
    .flatMap((e: RuntimeEvent) => ("process_kprobe" in e ? [{ ...e.process_kprobe.process }] : []))
    .map((p) => ({ pid: p.pid, exec_id: p.exec_id, binary: p.binary }));

describe("runtime controller: policy events wait for their process (no kernel)", () => {
  test("an event read before its process's records gets the exec's exec_id; one never known goes without, counted", async () => {
    const registry = new Registry();
    const rt = new RuntimeController(
      { nodeName: "n1", eventCacheAgeMs: 60_000 },
      { logger: pino({ level: "silent" }), endpoints: () => [], registry },
    );
    const onRecord = (r: ProcessRecord): void => rt.record(r);
    rt.pushPolicy(policyEvent(4242, 300n));
    assert.deepEqual(kprobes(rt), [], "held: its process is unknown");
    onRecord({ kind: "fork", pid: 4242, ppid: 1, ktime: 100n });
    await Promise.resolve();
    assert.deepEqual(kprobes(rt), [], "a fork read, the records not past the event: its exec may follow");
    onRecord({ kind: "exec", ...execRecord(4242, 200n, "/usr/bin/cat") });
    onRecord({ kind: "exit", pid: 99, code: 0, ktime: 400n }); // records past the event
    await Promise.resolve();
    const [k] = kprobes(rt);
    const exec = rt.read({}).find((e) => "process_exec" in e);
    assert.ok(exec && "process_exec" in exec);
    assert.deepEqual(k, { pid: 4242, exec_id: exec.process_exec.process.exec_id, binary: "/usr/bin/cat" });
    assert.notEqual(k?.exec_id, "");

    // A worker forked long before its event that never exec'd: out at once, as its clone.
    onRecord({ kind: "fork", pid: 6161, ppid: 4242, ktime: 450n });
    rt.pushPolicy(policyEvent(6161, 450n + 2_000_000_000n));
    const worker = kprobes(rt).find((p) => p.pid === 6161);
    assert.equal(worker?.binary, "/usr/bin/cat", "the clone of its parent");
    assert.notEqual(worker?.exec_id, "");

    // A pid whose records never come: out at stop (or its age) without exec_id, and counted.
    rt.pushPolicy(policyEvent(5151, 500n));
    await rt.stop();
    const lost = kprobes(rt).find((p) => p.pid === 5151);
    assert.equal(lost?.exec_id, "");
    const text = await registry.metrics();
    assert.match(text, /tetragon_event_cache_accesses_total 2/);
    assert.match(text, /tetragon_event_cache_process_info_errors_total\{event_type="PROCESS_KPROBE"\} 1/);
    assert.deepEqual([rt.status()["eventCacheHeld"], rt.status()["eventCacheMissed"]], [2, 1]);
  });
});
