/**
 * TracingPolicy end to end: `membrane apply -f` through the agent's API socket,
 * real processes in endpoint namespaces the agent created.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AgentLab } from "../../agent/e2e/harness.js";
import { catIn, runtimeSkipReason, SHADOW_KILL, until } from "./helpers.js";

const skip = runtimeSkipReason();
const ROOT = join(import.meta.dirname, "../../../..");

function membrane(socket: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [join(ROOT, "bin/membrane.js"), ...args, "--socket", socket], (e, out, err) =>
      resolve({ code: e ? Number(e.code ?? 1) : 0, out, err }),
    ),
  );
}

describe("TracingPolicy through the agent (root)", { skip }, () => {
  test("apply kills cat /etc/shadow in the selected endpoint only; get lists it; hostile policies are refused whole; delete stops the kills", async () => {
    const lab = await AgentLab.start("hrttp");
    try {
      const sock = lab.options.socketPath;
      const victim = await lab.endpoint("victim", { app: "victim" });
      const other = await lab.endpoint("other", { app: "other" });
      const file = join(lab.dir, "tp.yaml");
      writeFileSync(file, SHADOW_KILL());
      const applied = await membrane(sock, "apply", "-f", file);
      assert.equal(applied.code, 0, applied.err);
      assert.match(applied.out, /tp\/no-shadow\s+loaded/);

      assert.deepEqual(await catIn(victim.view.netns, "/etc/shadow"), { out: "", rc: 137 });
      const o = await catIn(other.view.netns, "/etc/shadow");
      assert.equal(o.rc, 0);
      assert.match(o.out, /^root:/);
      assert.equal((await catIn(undefined, "/etc/shadow")).rc, 0);

      // An endpoint created after the policy is covered as soon as its create returns.
      const late = await lab.endpoint("late", { app: "victim" });
      assert.equal((await catIn(late.view.netns, "/etc/shadow")).rc, 137);

      await until("kill events", () => lab.agent.tracing.recent().length >= 2);
      assert.ok(
        lab.agent.tracing
          .recent()
          .every((e) => e.policyName === "no-shadow" && e.action === "KPROBE_ACTION_SIGKILL"),
      );
      const got = await membrane(sock, "get", "tracingpolicies");
      assert.match(got.out, /TracingPolicy\s+-\s+no-shadow\s+loaded\s+2\s+1\s+[1-9]/, got.out);

      // Hostile or unsafe documents: refused with their field paths, nothing changes.
      const bad = join(lab.dir, "bad.yaml");
      writeFileSync(
        bad,
        SHADOW_KILL("-2").replace("values: [/etc/shadow]", 'values: ["/etc/x\\"); system(\\"id"]') +
          "---\n" +
          SHADOW_KILL("-3").replace(/  podSelector: .*\n/, ""),
      );
      const refused = await membrane(sock, "apply", "-f", bad);
      assert.notEqual(refused.code, 0);
      assert.match(
        refused.err,
        /spec\.kprobes\[0\]\.selectors\[0\]\.matchArgs\[0\]\.values\[0\]: value .* contains/,
      );
      assert.equal(lab.agent.tracing.list().length, 1);

      const deleted = await membrane(sock, "delete", "-f", file);
      assert.equal(deleted.code, 0, deleted.err);
      const after = await catIn(victim.view.netns, "/etc/shadow");
      assert.equal(after.rc, 0);
      assert.match(after.out, /^root:/);
      assert.deepEqual(lab.agent.tracing.list(), []);
    } finally {
      await lab.destroy();
    }
  });

  test("a Post-only policy through the agent produces an event and kills nothing", async () => {
    const lab = await AgentLab.start("hrtpo");
    try {
      const ep = await lab.endpoint("watched", { app: "watched" });
      await lab.agent.tracing.apply(
        `apiVersion: cilium.io/v1alpha1
kind: TracingPolicyNamespaced
metadata: {name: watch-exec, namespace: default}
spec:
  podSelector: {matchLabels: {app: watched}}
  kprobes:
  - call: security_bprm_check
    args: [{index: 0, type: linux_binprm}]
    selectors:
    - matchArgs: [{index: 0, operator: Prefix, values: [/usr/bin/]}]
`,
        "post.yaml",
      );
      const r = await catIn(ep.view.netns, "/etc/hostname");
      assert.equal(r.rc, 0);
      await until("the exec event", () =>
        lab.agent.tracing.recent().some((e) => e.args[0]?.value === "/usr/bin/cat"),
      );
      const e = lab.agent.tracing.recent().find((x) => x.args[0]?.value === "/usr/bin/cat");
      assert.equal(e?.action, "KPROBE_ACTION_POST");
      assert.equal(e?.functionName, "security_bprm_check");
      assert.equal(e?.policyNamespace, "default");
    } finally {
      await lab.destroy();
    }
  });
});
