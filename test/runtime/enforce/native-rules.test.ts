/**
 * Which probes the syscall guard serves, its rule table and its records
 * (pure): src/runtime/enforce/native-rules.ts, kill-record.ts, kill-prog.ts.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { guardPrograms } from "../../../src/runtime/enforce/kill-prog.js";
import type { KillLayout } from "../../../src/runtime/enforce/kill-layout.js";
import { decodeKillRecord, EVENT_SIZE, REC } from "../../../src/runtime/enforce/kill-record.js";
import { guardEvent, guardSpec, splitProbes } from "../../../src/runtime/enforce/native-rules.js";
import { syscallNumber } from "../../../src/runtime/enforce/syscall-numbers.js";
import { knownSyscalls } from "../../../src/runtime/policy/syscalls.js";
import { policy, SHADOW_KILL } from "./helpers.js";

const guards = { agentPid: 4242, hostNamespaces: { Net: 4026531840 } };

const doc = (hooks: string): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: t}
spec:
  podSelector: {matchLabels: {app: victim}}
${hooks}`;

const CASES: { name: string; hooks: string; native: boolean }[] = [
  {
    name: "a syscall kprobe with a path Equal",
    hooks: SHADOW_KILL().split("spec:\n")[1]?.split("\n").slice(1).join("\n") ?? "",
    native: true,
  },
  {
    name: "security_file_permission (three open syscalls) with Postfix",
    hooks: `  kprobes:
  - call: security_file_permission
    args: [{index: 0, type: file}]
    selectors:
    - matchArgs: [{index: 0, operator: Postfix, values: [.key]}]
      matchActions: [{action: Sigkill}]`,
    native: true,
  },
  {
    name: "a syscalls tracepoint with an int selector",
    hooks: `  tracepoints:
  - subsystem: syscalls
    event: sys_enter_setuid
    args: [{index: 5, type: int}]
    selectors:
    - matchArgs: [{index: 5, operator: Equal, values: [0]}]
      matchActions: [{action: Sigkill}]`,
    native: true,
  },
  {
    name: "sched_process_exec stays with bpftrace",
    hooks: `  tracepoints:
  - subsystem: sched
    event: sched_process_exec
    args: [{index: 4, type: string}]`,
    native: false,
  },
  {
    name: "cap_capable stays with bpftrace",
    hooks: `  kprobes:
  - call: cap_capable
    args: [{index: 2, type: int}]`,
    native: false,
  },
  {
    name: "three string arguments in one probe (mount) stay with bpftrace",
    hooks: `  kprobes:
  - call: sys_mount
    syscall: true
    args: [{index: 0, type: string}]
    selectors:
    - matchArgs:
      - {index: 0, operator: Prefix, values: [/dev]}
      - {index: 1, operator: Prefix, values: [/mnt]}
      - {index: 2, operator: Equal, values: [ext4]}
      matchActions: [{action: Sigkill}]`,
    native: false,
  },
];

describe("syscall guard rules (pure)", () => {
  test("every syscall of the table has its x86-64 number", () => {
    for (const s of knownSyscalls()) assert.ok(syscallNumber(s) !== undefined, s);
    assert.equal(syscallNumber("openat"), 257);
    assert.equal(syscallNumber("umount"), 166);
    assert.equal(syscallNumber("toString"), undefined);
  });

  for (const c of CASES)
    test(`${c.native ? "served" : "not served"}: ${c.name}`, () => {
      const p = policy(doc(c.hooks));
      const { native, other } = splitProbes(p.probes);
      assert.equal(native.length, c.native ? 1 : 0);
      assert.equal(other.length, c.native ? 0 : 1);
    });

  test("rules: one per selector and attach point; a record decodes into the event of its rule", () => {
    const p = policy(SHADOW_KILL());
    const { spec, rules } = guardSpec(p.probes, [4026532001], guards);
    assert.equal(rules.length, 1);
    assert.deepEqual(spec.groups[0]?.slots, [1]);
    const rec = Buffer.alloc(EVENT_SIZE);
    rec.writeUInt32LE(0, REC.rule);
    rec.writeUInt32LE(1, REC.flags);
    rec.writeUInt32LE(77, REC.pid);
    rec.write("c\x01t\\", REC.comm, "latin1");
    rec.writeInt32LE(12, REC.strLen);
    rec.write("/etc/shadow\0", REC.str, "latin1");
    const r = decodeKillRecord(rec.toString("hex"));
    assert.ok(r);
    assert.equal(r.comm, "c\\x01t\\x5c", "hostile bytes escaped");
    const e = guardEvent(r, rules, p, new Date(0));
    assert.equal(e?.action, "KPROBE_ACTION_SIGKILL");
    assert.equal(e?.args[0]?.value, "/etc/shadow");
    // Not signalled (PID 1, the agent, or the signal failed): reported as a Post.
    rec.writeUInt32LE(0, REC.flags);
    assert.equal(
      guardEvent(decodeKillRecord(rec.toString("hex"))!, rules, p, new Date(0))?.action,
      "KPROBE_ACTION_POST",
    );
    rec.writeUInt32LE(9, REC.rule);
    assert.equal(
      guardEvent(decodeKillRecord(rec.toString("hex"))!, rules, p, new Date(0)),
      undefined,
      "no such rule",
    );
  });

  test("hostile records: wrong size, not hex, an unreadable string", () => {
    assert.equal(decodeKillRecord(""), undefined);
    assert.equal(decodeKillRecord("00".repeat(EVENT_SIZE - 1)), undefined);
    assert.equal(decodeKillRecord("zz".repeat(EVENT_SIZE)), undefined);
    const rec = Buffer.alloc(EVENT_SIZE, 0x41);
    rec.writeInt32LE(-14, REC.strLen);
    assert.equal(decodeKillRecord(rec.toString("hex"))?.str, undefined);
    rec.writeInt32LE(4096, REC.strLen);
    const long = decodeKillRecord(rec.toString("hex"));
    assert.equal(long?.str?.length, 255);
    assert.equal(long?.strTruncated, true);
  });

  test("programs: learning programs only with matchBinaries, sys_enter last; nothing to attach for Override only", () => {
    const layout: KillLayout = {
      regs: [112, 104, 96, 56, 72, 64],
      regsSize: 168,
      tiStatus: 16,
      taskRealParent: 1280,
      taskTgid: 1268,
      taskPid: 1264,
      taskNsproxy: 1840,
      taskCred: 1736,
      taskSignal: 1900,
      signalLive: 4,
      ns: Object.fromEntries(
        ["Uts", "Ipc", "Mnt", "Net", "Time", "Cgroup", "User"].map((n) => [n, { ptr: 8, inum: 16 }]),
      ) as KillLayout["ns"],
      caps: { Effective: 64, Inheritable: 48, Permitted: 56 },
      binprmFilename: 96,
    };
    const plain = guardPrograms(guardSpec(policy(SHADOW_KILL()).probes, "node", guards).spec, layout);
    assert.deepEqual(
      plain.map((x) => x.tracepoint),
      ["sys_enter"],
    );
    const withBin = policy(
      doc(`  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchBinaries: [{operator: NotIn, values: [/usr/bin/cat]}]
      matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Sigkill}]`),
    );
    const progs = guardPrograms(guardSpec(withBin.probes, [1], guards).spec, layout);
    assert.deepEqual(
      progs.map((x) => x.tracepoint),
      ["sched_process_fork", "sched_process_exec", "sched_process_exit", "sys_enter"],
    );
    const override = policy(
      doc(`  kprobes:
  - call: security_file_open
    args: [{index: 0, type: file}]
    selectors:
    - matchArgs: [{index: 0, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Override, argError: -1}]`),
    );
    assert.equal(guardSpec(override.probes, [1], guards).spec.groups.length, 0);
  });
});
