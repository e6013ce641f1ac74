import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { RuntimeEnforcer } from "../../../src/runtime/enforce/enforcer.js";
import { isMembraneError } from "../../../src/errors.js";
import type { TracingPolicy } from "../../../src/runtime/policy/types.js";
import { catIn, collector, Netns, policy, prefix, runtimeSkipReason, SHADOW_KILL, until } from "./helpers.js";

const skip = runtimeSkipReason();

function children(name: "bpftrace" | "membrane-syscall-guard"): number[] {
  const r = spawnSync("pgrep", ["-P", String(process.pid), "-f", name], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

describe("runtime enforcer: Sigkill from the kernel (root)", { skip }, () => {
  test("cat /etc/shadow in a selected endpoint is killed (exit 137, nothing printed); unselected endpoint and host are not", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const b = Netns.add(`${px}-b`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" }), b.endpoint({ app: "other" })]);
      const st = await enf.apply(policy(SHADOW_KILL()));
      assert.equal(st.state, "loaded");
      assert.equal(st.endpoints, 1);
      const killed = await catIn(a.name, "/etc/shadow");
      assert.deepEqual(killed, { out: "", rc: 137 });
      const other = await catIn(b.name, "/etc/shadow");
      assert.equal(other.rc, 0);
      assert.match(other.out, /^root:/);
      const host = await catIn(undefined, "/etc/shadow");
      assert.equal(host.rc, 0);
      await until("the kill event", () => events.length > 0);
      const e = events[0];
      assert.equal(e?.policyName, "no-shadow");
      assert.equal(e?.action, "KPROBE_ACTION_SIGKILL");
      assert.equal(e?.functionName, "__x64_sys_openat");
      assert.equal(e?.comm, "cat");
      assert.equal(e?.netnsInode, a.inode);
      assert.deepEqual(e?.args, [{ index: 1, type: "string", label: undefined, value: "/etc/shadow" }]);
      // Other files are untouched in the selected endpoint.
      assert.equal((await catIn(a.name, "/etc/hostname")).rc, 0);
    } finally {
      await enf.stop();
      a.del();
      b.del();
    }
  });

  test("a Post-only policy reports the open and kills nothing; NoPost reports nothing", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const { events, sink } = collector();
    const enf = new RuntimeEnforcer({ sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(
        policy(`apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: watch-shadow}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
  - call: security_file_permission
    args: [{index: 0, type: file}, {index: 1, type: int}]
    selectors:
    - matchArgs: [{index: 0, operator: Prefix, values: [/etc/shad]}]
      matchActions: [{action: Post}]
    - matchArgs: [{index: 0, operator: Equal, values: [/etc/hostname]}]
      matchActions: [{action: NoPost}]
`),
      );
      const r = await catIn(a.name, "/etc/shadow");
      assert.equal(r.rc, 0);
      assert.match(r.out, /^root:/);
      assert.equal((await catIn(a.name, "/etc/hostname")).rc, 0);
      await until("the post event", () => events.length > 0);
      // One event per open of /etc/shadow (openat), none for /etc/hostname (NoPost).
      assert.ok(events.every((e) => e.action === "KPROBE_ACTION_POST" && e.args[0]?.value === "/etc/shadow"));
      assert.equal(events[0]?.functionName, "security_file_permission");
      assert.equal(events[0]?.args[1]?.value, undefined, "the mask cannot be read at open: reported absent");
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("deleting the policy: nothing is killed any more, and its loader is gone", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      const p = policy(SHADOW_KILL());
      await enf.apply(p);
      assert.equal((await catIn(a.name, "/etc/shadow")).rc, 137);
      // setpriv execs into the loader: one process, a direct child of the agent; no bpftrace.
      assert.equal(children("membrane-syscall-guard").length, 1);
      assert.equal(children("bpftrace").length, 0);
      assert.deepEqual(enf.list()[0]?.programs, ["syscall-guard"]);
      assert.equal(await enf.remove(p), true);
      assert.equal(children("membrane-syscall-guard").length, 0);
      const r = await catIn(a.name, "/etc/shadow");
      assert.equal(r.rc, 0);
      assert.match(r.out, /^root:/);
      assert.deepEqual(enf.list(), []);
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("an endpoint that joins the selection later is covered once setEndpoints returns (make-before-break)", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const b = Netns.add(`${px}-b`);
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(policy(SHADOW_KILL()));
      assert.equal((await catIn(b.name, "/etc/shadow")).rc, 0);
      await enf.setEndpoints([a.endpoint({ app: "victim" }), b.endpoint({ app: "victim" })]);
      assert.equal((await catIn(b.name, "/etc/shadow")).rc, 137);
      assert.equal((await catIn(a.name, "/etc/shadow")).rc, 137);
      assert.equal(enf.list()[0]?.endpoints, 2);
    } finally {
      await enf.stop();
      a.del();
      b.del();
    }
  });

  test("a policy whose second probe cannot attach leaves nothing attached (all or nothing)", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      const good = policy(SHADOW_KILL());
      const [probe] = good.probes;
      assert.ok(probe);
      // A tracepoint this kernel does not have (as if the table were wrong): bpftrace must refuse the whole program.
      const broken: TracingPolicy = {
        ...good,
        probes: [
          probe,
          { ...probe, attach: [{ tracepoint: "syscalls:sys_enter_no_such_call", args: new Map() }] },
        ],
      };
      await assert.rejects(
        enf.apply(broken),
        (e) => isMembraneError(e) && e.code === "RUNTIME_ENFORCER_FAILED",
      );
      const r = await catIn(a.name, "/etc/shadow");
      assert.equal(r.rc, 0, "the first probe's kill must not be attached");
      assert.deepEqual(enf.list(), []);
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("the syscall guard runs with CAP_BPF and CAP_PERFMON only, no new privileges", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const enf = new RuntimeEnforcer({ sink: collector().sink });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(policy(SHADOW_KILL()));
      const mine = children("membrane-syscall-guard");
      assert.equal(mine.length, 1);
      const status = readFileSync(`/proc/${mine[0]}/status`, "utf8");
      const eff = BigInt("0x" + (/CapEff:\s*([0-9a-f]+)/.exec(status)?.[1] ?? "0"));
      assert.equal(eff, (1n << 38n) | (1n << 39n), `CapEff ${eff.toString(16)}`);
      assert.match(status, /NoNewPrivs:\s*1/);
    } finally {
      await enf.stop();
      a.del();
    }
  });

  test("bpftrace (syscallGuard: bpftrace) runs with CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN only", async () => {
    const px = prefix();
    const a = Netns.add(`${px}-a`);
    const enf = new RuntimeEnforcer({ sink: collector().sink, syscallGuard: "bpftrace" });
    try {
      await enf.setEndpoints([a.endpoint({ app: "victim" })]);
      await enf.apply(policy(SHADOW_KILL()));
      assert.equal((await catIn(a.name, "/etc/shadow")).rc, 137, "the bpftrace path still kills");
      const mine = children("bpftrace");
      assert.equal(mine.length, 1);
      const status = readFileSync(`/proc/${mine[0]}/status`, "utf8");
      const eff = BigInt("0x" + (/CapEff:\s*([0-9a-f]+)/.exec(status)?.[1] ?? "0"));
      assert.equal(eff, (1n << 21n) | (1n << 38n) | (1n << 39n), `CapEff ${eff.toString(16)}`);
      assert.match(status, /CapBnd:\s*000000c000200000/);
    } finally {
      await enf.stop();
      a.del();
    }
  });
});
