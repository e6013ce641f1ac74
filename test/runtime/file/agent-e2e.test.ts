/**
 * File-access denial end to end: `membrane apply -f` of an Override policy
 * through the agent's API socket, real processes in endpoint namespaces the
 * agent created.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { AgentLab } from "../../agent/e2e/harness.js";
import { until } from "../enforce/helpers.js";
import { DENY_FILE, fanotifySkipReason, sh } from "./helpers.js";

const skip = fanotifySkipReason();
const json = (v: unknown): string =>
  JSON.stringify(v, (_k, x: unknown) => (typeof x === "bigint" ? String(x) : x));
const ROOT = join(import.meta.dirname, "../../../..");

function membrane(socket: string, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [join(ROOT, "bin/membrane.js"), ...args, "--socket", socket], (e, out, err) =>
      resolve({ code: e ? Number(e.code ?? 1) : 0, out, err }),
    ),
  );
}

describe("file-access denial through the agent (root)", { skip }, () => {
  test("apply denies /etc/shadow to the selected endpoints only (a later one too); get counts denials; delete lifts it", async () => {
    const lab = await AgentLab.start("faag");
    try {
      const sock = lab.options.socketPath;
      const victim = await lab.endpoint("victim", { app: "victim" });
      const other = await lab.endpoint("other", { app: "other" });
      const file = join(lab.dir, "deny.yaml");
      writeFileSync(file, DENY_FILE("security_file_open", "Equal", ["/etc/shadow"], "deny-shadow"));
      const applied = await membrane(sock, "apply", "-f", file);
      assert.equal(applied.code, 0, applied.err);
      assert.match(applied.out, /deny-shadow\s+loaded/);

      const cat = 'cat "$1"';
      // What the agent says of its TracingPolicies, for a failure's message.
      const status = (): string => json(lab.agent.tracing.list());
      const denied = await sh(victim.view.netns, cat, "/etc/shadow");
      assert.deepEqual([denied.code, denied.out.slice(0, 5)], [1, ""], `victim: ${denied.err} ${status()}`);
      assert.match(denied.err, /Operation not permitted/);
      assert.match((await sh(other.view.netns, cat, "/etc/shadow")).out, /^root:/);
      assert.match((await sh(undefined, cat, "/etc/shadow")).out, /^root:/);

      // An endpoint created after the policy is covered once its create returns.
      const late = await lab.endpoint("late", { app: "victim" });
      const lateCat = await sh(late.view.netns, cat, "/etc/shadow");
      assert.equal(lateCat.code, 1, `late: ${lateCat.out.slice(0, 5)} ${lateCat.err} ${status()}`);

      await until(`two denial events (${status()})`, () => lab.agent.tracing.recent().length >= 2);
      assert.ok(
        lab.agent.tracing
          .recent()
          .every((e) => e.policyName === "deny-shadow" && e.action === "KPROBE_ACTION_OVERRIDE"),
        json(lab.agent.tracing.recent()).slice(0, 2000),
      );
      const got = await membrane(sock, "get", "tracingpolicies");
      assert.match(got.out, /deny-shadow\s+loaded\s+2\s+3\s+2\s+0\s+2\s/, got.out);

      const deleted = await membrane(sock, "delete", "-f", file);
      assert.equal(deleted.code, 0, deleted.err);
      assert.match((await sh(victim.view.netns, cat, "/etc/shadow")).out, /^root:/);
      assert.deepEqual(lab.agent.tracing.list(), []);
    } finally {
      await lab.destroy();
    }
  });
});
