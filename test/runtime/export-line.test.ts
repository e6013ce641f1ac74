/** The export line made from memoized process JSON is exactly JSON.stringify of the event. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { RuntimeEvent } from "../../src/runtime/events.js";
import { IsoClock, ktimeToIso } from "../../src/runtime/exec-id.js";
import { exportLine } from "../../src/runtime/export-line.js";
import { ProcessCache } from "../../src/runtime/process-cache.js";
import type { ExecRecord } from "../../src/runtime/source/assemble.js";

const POD = { namespace: "default", name: "web", pod_labels: { app: "web", 'a"b': "x\ny" }, workload: "web" };

function rec(pid: number, ppid: number, ktime: bigint, argv: string[]): ExecRecord {
  return {
    pid,
    ppid,
    uid: 1000,
    auid: 4294967295,
    netns: pid % 2 === 0 ? 42 : 1,
    cgroup: 1n,
    startBoottime: ktime,
    ktime,
    argv,
    argsTruncated: false,
    cwd: '/tmp/a "b"',
    cwdComplete: true,
    binary: argv[0] ?? "",
  };
}

test("exec (with and without a parent), exit (status, signal, exited parent) and other events: byte-identical to JSON.stringify", () => {
  const c = new ProcessCache({ nodeName: "n1", bootNs: 0n, podOf: (n) => (n === 42 ? POD : undefined) });
  const wrap = (body: object): RuntimeEvent =>
    ({ ...body, node_name: 'n\u00e9"1', time: "2026-12-05T22:00:00.000000001Z" }) as RuntimeEvent;
  const events: RuntimeEvent[] = [];
  events.push(wrap({ process_exec: c.exec(rec(10, 1, 5n, ["/bin/sh", "-c", "a b", "\u2028"])) })); // no parent known
  for (let i = 0; i < 3; i++) {
    c.fork(20 + i, 10, 6n + BigInt(i));
    events.push(wrap({ process_exec: c.exec(rec(20 + i, 10, 10n + BigInt(i), ["/bin/true", `${i}`])) }));
  }
  for (const [pid, code] of [
    [20, 0],
    [21, 9],
    [22, 3 << 8],
    [10, 15],
  ] as const) {
    const x = c.exit(pid, code, 100n + BigInt(pid));
    assert.ok(x);
    events.push(wrap({ process_exit: x }));
  }
  events.push(
    wrap({
      process_kprobe: {
        process: c.get(21)?.process,
        function_name: "__x64_sys_openat",
        args: [{ string_arg: "/etc/shadow" }],
        action: "KPROBE_ACTION_SIGKILL",
        policy_name: "p",
      },
    }),
  );
  // twice: the second time the processes' JSON comes from the memo
  for (let round = 0; round < 2; round++)
    for (const e of events) assert.equal(exportLine(e), JSON.stringify(e) + "\n");
  assert.ok(events.some((e) => "process_exit" in e && e.process_exit.signal === "SIGKILL"));
  assert.ok(events.some((e) => "process_exit" in e && e.process_exit.status === 3));
});

test("IsoClock gives ktimeToIso's text for every ktime (second boundaries, carries, huge values)", () => {
  const boot = 1_764_892_799_999_999_999n;
  const clock = new IsoClock(boot);
  const ks: bigint[] = [
    0n,
    1n,
    999_999_999n,
    1_000_000_000n,
    1_000_000_001n,
    9_007_199_254_740_991n,
    9_007_199_254_740_993n,
  ];
  for (let i = 0; i < 2000; i++) ks.push(BigInt(Math.floor(Math.random() * 2 ** 47)));
  for (let i = 0; i < 200; i++) ks.push(46_000_000_000_000n + BigInt(i) * 7_777_777n); // a stream within seconds
  for (const k of ks) assert.equal(clock.iso(k), ktimeToIso(k, boot), `ktime ${k}`);
});
