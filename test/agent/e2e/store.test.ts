/**
 * Policies in the agent's store (needs root): each policy stored once in its
 * normalised form, so the state directory and the restart grow linearly with
 * the number of policies; re-applying an unchanged file changes nothing; a
 * state directory written with V1 records (a copy of the file per policy)
 * still restores and is rewritten.
 */
import assert from "node:assert/strict";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { pino } from "pino";
import { KEYS } from "../../../src/agent/records.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

function manyPolicies(n: number): string {
  let text = "";
  for (let i = 0; i < n; i++) {
    text += `---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p${i}, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: s${i}}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: c${i}}}]
    toPorts: [{ports: [{port: "${1000 + i}", protocol: TCP}]}]
`;
  }
  return text;
}

function dirBytes(dir: string): number {
  return readdirSync(dir).reduce((sum, n) => {
    const s = statSync(join(dir, n));
    return sum + (s.isDirectory() ? dirBytes(join(dir, n)) : s.size);
  }, 0);
}

describe("agent e2e: policies in the store (root)", { skip: skip ?? false }, () => {
  test("a 500-policy file is stored once per policy (linear size); a restarted agent serves the same policies and changes nothing; re-applying it changes nothing", async () => {
    const lab = await AgentLab.start("st");
    try {
      const server = await lab.endpoint("server", { app: "s7" }, { tcp: [1007] });
      const client = await lab.endpoint("client", { app: "c7" });
      const text = manyPolicies(500);
      const first = await lab.agent.applyPolicies(text, "many.yaml");
      assert.equal(first.policies.filter((p) => p.status === "created").length, 500);
      const bytes = dirBytes(lab.options.stateDir);
      assert.ok(bytes < 8 * text.length, `state dir ${bytes} bytes for a ${text.length}-byte file`);

      const listed = (): unknown[] =>
        lab.agent.listPolicies().sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const before = listed();
      await lab.stopAgent();
      await lab.startAgent();
      assert.deepEqual(listed(), before, "the same policies are served");
      assert.deepEqual(await lab.agent.datapathDiff(), [], "the kernel already held them");
      assert.equal(await client.probe.tcp(server.ip, 1007, T), "ok");

      const revision = lab.agent.status().revision;
      const again = await lab.agent.applyPolicies(text, "many-renamed.yaml");
      assert.deepEqual(
        new Set(again.policies.map((p) => p.status)),
        new Set(["unchanged"]),
        "every policy unchanged",
      );
      assert.equal(again.kernelOps, 0);
      assert.equal(again.revision, revision, "no new revision");
      assert.equal(lab.agent.status().revision, revision);
      assert.equal(dirBytes(lab.options.stateDir), bytes, "no store write");
    } finally {
      await lab.destroy();
    }
  });

  test("a state directory with V1 records (the whole file per policy) restores, and is rewritten as V2", async () => {
    const lab = await AgentLab.prepare("st");
    try {
      const text = manyPolicies(3);
      const store = await EmbeddedStore.open({
        dir: join(lab.options.stateDir, "store"),
        logger: pino({ level: "silent" }),
      });
      for (let i = 0; i < 3; i++) {
        await store.put(
          `${KEYS.policies}CiliumNetworkPolicy/default/p${i}`,
          JSON.stringify({ text, file: "v1.yaml" }),
        );
      }
      await store.close();
      await lab.startAgent();
      assert.deepEqual(
        lab.agent.listPolicies().map((p) => p.name),
        ["p0", "p1", "p2"],
      );
      const server = await lab.endpoint("server", { app: "s1" }, { tcp: [1001, 1002] });
      const client = await lab.endpoint("client", { app: "c1" });
      assert.deepEqual(
        [await client.probe.tcp(server.ip, 1001, T), await client.probe.tcp(server.ip, 1002, T)],
        ["ok", "timeout"],
        "the restored policy p1 is enforced",
      );
      await lab.stopAgent();
      const reopened = await EmbeddedStore.open({
        dir: join(lab.options.stateDir, "store"),
        logger: pino({ level: "silent" }),
      });
      const kvs = (await reopened.list(KEYS.policies)).kvs;
      await reopened.close();
      assert.deepEqual(
        kvs.map((kv) => (JSON.parse(kv.value) as { v?: number }).v),
        [2, 2, 2],
      );
      assert.ok(
        kvs.every((kv) => !kv.value.includes("name: p")),
        "no record holds the file any more",
      );
      await lab.startAgent();
      assert.deepEqual(
        lab.agent.listPolicies().map((p) => p.name),
        ["p0", "p1", "p2"],
      );
    } finally {
      await lab.destroy();
    }
  });
});
