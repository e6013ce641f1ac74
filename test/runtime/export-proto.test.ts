import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { RuntimeEvent } from "../../src/runtime/events.js";
import { execId, exitStatus, ktimeToIso } from "../../src/runtime/exec-id.js";
import { ProcessCache } from "../../src/runtime/process-cache.js";
import type { ExecRecord } from "../../src/runtime/source/assemble.js";
import { parseStrict } from "./tetragon-schema.js";

const BOOT = 1_764_892_800_000_000_000n; // 2025-12-05T00:00:00Z
const NODE = "node1";
const POD = { namespace: "default", name: "web", pod_labels: { app: "web" }, workload: "web" };

function exec(pid: number, ppid: number, ktime: bigint, extra: Partial<ExecRecord> = {}): ExecRecord {
  return {
    pid,
    ppid,
    uid: 1000,
    auid: 4294967295,
    netns: pid === 1 ? 1 : 42,
    cgroup: 1n,
    startBoottime: ktime,
    ktime,
    argv: ["/bin/sh", "-c", "echo hi"],
    argsTruncated: false,
    cwd: "/tmp",
    cwdComplete: true,
    binary: "/bin/sh",
    ...extra,
  };
}

function cache(): ProcessCache {
  return new ProcessCache({ nodeName: NODE, bootNs: BOOT, podOf: (n) => (n === 42 ? POD : undefined) });
}

const wrap = (e: object, ktime: bigint): RuntimeEvent =>
  ({ ...e, node_name: NODE, time: ktimeToIso(ktime, BOOT) }) as RuntimeEvent;

describe("Tetragon JSON export, read with Tetragon's own schema (strict)", () => {
  test("exec_id is base64(node:ktime:pid), as Tetragon's GetProcessID", () => {
    assert.equal(Buffer.from(execId("n", 5n, 7), "base64").toString(), "n:5:7");
  });

  test("wait status: exit code, or the signal's name", () => {
    assert.deepEqual(exitStatus(3 << 8), { status: 3 });
    assert.deepEqual(exitStatus(9), { signal: "SIGKILL", status: 0 });
    assert.deepEqual(exitStatus(15 | 0x80), { signal: "SIGTERM", status: 0 });
  });

  test("process_exec, clone and process_exit of an endpoint's process, with parent and pod", () => {
    const c = cache();
    const e1 = c.exec(exec(100, 1, 1_000n));
    const e2 = c.exec(
      exec(101, 100, 2_000n, { argv: ["cat", "/etc/shadow", "a b"], binary: "/usr/bin/cat" }),
    );
    c.fork(102, 101, 3_000n);
    const x = c.exit(102, 9, 4_000n);
    assert.ok(x);
    const lines = [
      wrap({ process_exec: e1 }, 1_000n),
      wrap({ process_exec: e2 }, 2_000n),
      wrap({ process_exit: x }, 4_000n),
    ].map((e) => JSON.stringify(e));
    const parsed = lines.map(parseStrict);
    const p2 = (parsed[1]?.["process_exec"] as {
      process: Record<string, unknown>;
      parent: Record<string, unknown>;
    })!;
    assert.equal(p2.process["binary"], "/usr/bin/cat");
    assert.equal(p2.process["arguments"], '/etc/shadow "a b"');
    assert.equal(p2.process["parent_exec_id"], e1.process.exec_id);
    assert.equal(p2.parent["exec_id"], e1.process.exec_id);
    assert.deepEqual(p2.process["pod"], {
      namespace: "default",
      name: "web",
      pod_labels: { app: "web" },
      workload: "web",
    });
    const exit = parsed[2]?.["process_exit"] as { process: Record<string, unknown>; signal: string };
    assert.equal(exit.signal, "SIGKILL");
    assert.equal(exit.process["flags"], "clone");
    assert.equal(exit.process["parent_exec_id"], e2.process.exec_id);
    assert.equal(parsed[0]?.["node_name"], NODE);
  });

  test("the host's processes have no pod", () => {
    const e = cache().exec(exec(1, 0, 10n));
    const p = parseStrict(JSON.stringify(wrap({ process_exec: e }, 10n)));
    assert.equal((p["process_exec"] as { process: Record<string, unknown> }).process["pod"], undefined);
  });

  test("process_kprobe, process_tracepoint and process_uprobe (the policy sensors' events) parse", () => {
    const c = cache();
    const { process, parent } = c.exec(exec(200, 1, 5n));
    const events = [
      {
        process_kprobe: {
          process,
          ...(parent ? { parent } : {}),
          function_name: "__x64_sys_openat",
          args: [{ int_arg: -100 }, { string_arg: "/etc/shadow", label: "path" }],
          action: "KPROBE_ACTION_SIGKILL",
          policy_name: "deny-shadow",
          tags: ["file"],
        },
      },
      {
        // A file access denied by the fanotify responder (src/runtime/file/, through runtime-bridge.ts).
        process_kprobe: {
          process,
          function_name: "security_file_permission",
          args: [{ file_arg: { path: "/etc/shadow" } }],
          action: "KPROBE_ACTION_OVERRIDE",
          policy_name: "deny-shadow-read",
        },
      },
      {
        process_tracepoint: {
          process,
          subsys: "sock",
          event: "inet_sock_set_state",
          args: [{ sock_arg: { family: "AF_INET", daddr: "10.0.0.1", dport: 80 } }],
          policy_name: "conns",
          action: "KPROBE_ACTION_POST",
        },
      },
      { process_uprobe: { process, path: "/bin/bash", symbol: "readline", policy_name: "bash" } },
    ];
    for (const e of events) parseStrict(JSON.stringify(wrap(e, 5n)));
  });

  test("the reader is strict: a field Tetragon does not have is refused", () => {
    const e = cache().exec(exec(300, 1, 5n));
    const bad = { ...wrap({ process_exec: e }, 5n), endpoint: "web" };
    assert.throws(() => parseStrict(JSON.stringify(bad)), /endpoint/);
  });
});
