/**
 * `membrane uninstall` (rd): refuses while an agent answers; once it is
 * stopped, removes the node's table, the endpoint namespaces of the prefix,
 * the node namespace, the state and socket directories, and says so.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";
import { cli, ROOT } from "./run-cli.js";

test(
  "rd: membrane uninstall refuses while the agent answers, then removes everything it left and says what",
  {
    skip: rootSkipReason(),
    timeout: 120_000,
  },
  async () => {
    const prefix = uniquePrefix("rd");
    const dir = mkdtempSync(join(tmpdir(), "membrane-rd-un-"));
    const opts = [
      "--state-dir",
      join(dir, "state"),
      "--socket",
      join(dir, "run", "agent.sock"),
      "--node-netns",
      `${prefix}-node`,
      "--netns-prefix",
      `${prefix}-e`,
      "--table",
      `m${prefix}`,
    ];
    const agent = spawn(
      process.execPath,
      [join(ROOT, "bin/membrane.js"), "agent", ...opts, "--no-proxy", "--no-flows", "--resync", "0"],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let log = "";
    agent.stderr.on("data", (b: Buffer) => (log += b.toString()));
    const socket = ["--socket", join(dir, "run", "agent.sock")];
    try {
      for (let i = 0; i < 300 && cli("get", "status", ...socket).code !== 0; i++) {
        assert.equal(agent.exitCode, null, `agent exited:\n${log}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const ep = cli("endpoint", "create", "web", "--labels", "app=web", ...socket);
      assert.equal(ep.code, 0, ep.stderr);

      const refused = cli("uninstall", ...opts);
      assert.equal(refused.code, 2, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /Cannot uninstall: an agent answers on .*agent\.sock/);
      assert.match(refused.stderr, /hint: stop the agent first/);
      assert.ok(existsSync(join(dir, "state")), "a refused uninstall removed the state directory");
      assert.ok((await listNetns()).includes(`${prefix}-node`), "a refused uninstall removed the node");

      agent.kill("SIGTERM");
      await once(agent, "exit");
      const r = cli("uninstall", ...opts, "-o", "json");
      assert.equal(r.code, 0, r.stderr);
      const removed = (JSON.parse(r.stdout) as { removed: string[] }).removed;
      assert.deepEqual(removed, [
        `nftables table inet m${prefix} (netns ${prefix}-node)`,
        `route blackhole 10.200.0.0/24 (netns ${prefix}-node)`,
        `address 10.200.0.1/32 on lo (netns ${prefix}-node)`,
        `network namespace ${prefix}-eep1`,
        `network namespace ${prefix}-node`,
        `state directory ${join(dir, "state")}`,
        `socket directory ${join(dir, "run")}`,
      ]);
      assert.deepEqual(
        (await listNetns()).filter((n) => n.startsWith(prefix)),
        [],
      );
      assert.ok(!existsSync(join(dir, "state")) && !existsSync(join(dir, "run")));

      const again = cli("uninstall", ...opts);
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout, "nothing to remove: Membrane left nothing on this node\n");
    } finally {
      if (agent.exitCode === null) agent.kill("SIGKILL");
      await runRaw(["ip", "netns", "del", `${prefix}-node`]);
      await cleanupPrefix(prefix);
      rmSync(dir, { recursive: true, force: true });
    }
  },
);

test("rd: membrane uninstall will not delete a state directory next to /", () => {
  const r = cli("uninstall", "--state-dir", "/var", "--socket", "/nonexistent/agent.sock");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Cannot uninstall: --state-dir "\/var" is too close to \/ to delete safely/);
});
