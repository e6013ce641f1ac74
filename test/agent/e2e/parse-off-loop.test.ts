/**
 * A policy file that takes the YAML parser seconds does not block the
 * agent's API (needs root: a real agent in its own namespaces). The file is
 * within every input limit (policy/api/limits.ts): 2 MiB of rules with one
 * unknown field at the end, which the `yaml` library needs seconds for; the
 * agent parses it in a worker thread, so other requests are answered
 * meanwhile, and the file is refused with its problem, changing nothing.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { AgentClient } from "../../../src/agent/client.js";
import { isMembraneError } from "../../../src/errors.js";
import { LIMITS } from "../../../src/policy/api/limits.js";
import { AgentLab, rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

describe("agent e2e: parsing a policy file never blocks the API (root)", { skip: skip ?? false }, () => {
  test(
    "status answers while a 2 MiB policy file is parsed; the file is refused and nothing changes",
    { timeout: 300_000 },
    async () => {
      const lab = await AgentLab.start("parse");
      try {
        const c = new AgentClient({ socketPath: lab.options.socketPath as string, timeoutMs: 240_000 });
        const rule =
          "  - toPorts: [{ports: [{port: '80', protocol: TCP}]}]\n    fromEndpoints: [{matchLabels: {app: web}}]\n";
        const head =
          "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: big, namespace: default}\n" +
          "spec:\n  endpointSelector: {}\n  ingress:\n";
        const n = Math.floor((LIMITS.bytes - 1000) / rule.length);
        const flood = head + rule.repeat(n) + "  - bogus: 1\n";
        const started = Date.now();
        let settled = false;
        const post = c.request("POST", "/v1/policies", { text: flood, file: "flood.yaml" }).then(
          () => assert.fail("the flood was applied"),
          (e: unknown) => e,
        );
        void post.finally(() => (settled = true));
        // Ask for status repeatedly while the flood is being parsed; count answers that came
        // while the POST was still pending and after it had surely reached the parser (its upload takes milliseconds).
        let answeredDuring = 0;
        while (!settled) {
          await sleep(200);
          await c.request("GET", "/v1/status");
          if (!settled && Date.now() - started >= 1000) answeredDuring++;
        }
        const e = await post;
        assert.ok(isMembraneError(e), String(e));
        assert.equal(e.code, "POLICY_INVALID", e.message);
        assert.equal(e.message, "Cannot apply flood.yaml: 1 problem in 1 of 1 document");
        assert.equal(e.issues[0]?.path, `spec.ingress[${n}].bogus`);
        assert.ok(answeredDuring >= 1, `status answered ${answeredDuring} times while the flood was parsed`);
        assert.deepEqual(await c.request("GET", "/v1/policies"), []);
      } finally {
        await lab.destroy();
      }
    },
  );
});
