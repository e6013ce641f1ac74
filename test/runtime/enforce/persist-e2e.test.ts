/**
 * TracingPolicies survive an agent restart: stored when applied (a rejected
 * file stores nothing), enforced again before the restarted agent serves,
 * deleted ones stay deleted. Real agent lab, real processes.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentLab } from "../../agent/e2e/harness.js";
import { catIn, runtimeSkipReason, SHADOW_KILL } from "./helpers.js";

const skip = runtimeSkipReason();

describe("TracingPolicies across an agent restart (root)", { skip }, () => {
  test("an applied policy kills again as soon as the restarted agent is up; a deleted or rejected one does not come back", async () => {
    const lab = await AgentLab.start("rgtp");
    try {
      const victim = await lab.endpoint("victim", { app: "victim" });
      await lab.agent.tracing.apply(SHADOW_KILL() + "---\n" + SHADOW_KILL("-2"), "two.yaml");
      await lab.agent.tracing.delete(SHADOW_KILL("-2"), "two.yaml");
      // A file with one good and one unsafe policy is refused whole: nothing of it is stored.
      await assert.rejects(
        lab.agent.tracing.apply(
          SHADOW_KILL("-3") + "---\n" + SHADOW_KILL("-4").replace(/  podSelector: .*\n/, ""),
          "bad.yaml",
        ),
        /TRACING_POLICY_UNSAFE|Cannot apply bad\.yaml/,
      );
      assert.deepEqual(
        lab.agent.tracing.list().map((s) => s.name),
        ["no-shadow"],
      );

      await lab.stopAgent();
      // No agent: nothing kills.
      assert.equal((await catIn(victim.view.netns, "/etc/shadow")).rc, 0);

      await lab.startAgent();
      // start() resolved: the API would serve now, and the policy is enforced already.
      const after = lab.agent.tracing.list();
      assert.deepEqual(
        after.map((s) => [s.name, s.state, s.endpoints]),
        [["no-shadow", "loaded", 1]],
      );
      assert.deepEqual(await catIn(victim.view.netns, "/etc/shadow"), { out: "", rc: 137 });

      // Deleted after the restart: it stays deleted at the next one.
      await lab.agent.tracing.delete(SHADOW_KILL(), "again.yaml");
      await lab.stopAgent();
      await lab.startAgent();
      assert.deepEqual(lab.agent.tracing.list(), []);
      assert.equal((await catIn(victim.view.netns, "/etc/shadow")).rc, 0);
    } finally {
      await lab.destroy();
    }
  });
});
