// `policy why` for a drop of a pod on another node (cluster mode: a remote endpoint in the
// engine): the answer names the policy that put the direction in default deny, the peer by its
// labels, and proposes an allow by those labels (checked), not "cannot write an allow".
import { test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import { explainDrop } from "../../src/policy/why.js";
import { STARWARS_L3L4 } from "../../src/cli/demo.js";

test("why: a remote pod dropped by default deny is named by its labels, the policy by its name, and an allow by labels is proposed and verified", () => {
  const e = new PolicyEngine();
  e.upsertEndpoint({
    name: "deathstar",
    namespace: "default",
    labels: { org: "empire", class: "deathstar" },
    ips: ["10.200.1.2"],
  });
  e.upsertRemoteEndpoint({
    ip: "10.200.2.2",
    namespace: "default",
    labels: { org: "alliance", class: "xwing" },
  });
  for (const p of parsePolicies(STARWARS_L3L4, "rule1.yaml")) e.upsertPolicy(p);
  const a = explainDrop(e, {
    from: { kind: "ip", ip: "10.200.2.2" },
    to: { kind: "endpoint", name: "deathstar", namespace: "default" },
    proto: "TCP",
    port: 80,
  });
  assert.equal(a.verdict, "deny");
  const text = a.lines.join("\n");
  assert.match(text, /default deny \(default\/rule1 selecting default\/deathstar has ingress rules\)/);
  assert.match(text, /10\.200\.2\.2 \(a pod of default on another node: org=alliance,class=xwing\)/);
  assert.match(a.proposal ?? "", /fromEndpoints:\n\s+- matchLabels:\n\s+org: alliance\n\s+class: xwing/);
  assert.equal(a.verified, true);
});
