/**
 * The host firewall through the agent (needs root): a CCNP whose nodeSelector
 * selects this node by its labels (engine nodeLabels, `--node-labels`) is
 * enforced in the kernel on traffic to the node itself, with flows naming the
 * host and the policy; a host policy for other nodes, or none, leaves the node
 * open. Real packets from pods to the node namespace.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { filterFromFlags } from "../../../src/observe/index.js";
import type { Flow } from "../../../src/observe/flow.js";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const hostPolicy = (role: string): string => `apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: db-ssh}
spec:
  nodeSelector: {matchLabels: {role: ${role}}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;

describe("agent e2e: host firewall by the node's labels (root)", { skip: rootSkipReason() ?? false }, () => {
  test("a host policy selecting role=db: web -> node:22 allowed, :23 and another pod dropped, with flows; removed: open", async () => {
    const lab = await AgentLab.start("hfa", {
      engine: { nodeLabels: { role: "db" } },
      podCidr4: "10.212.30.0/24",
      proxy: true,
    });
    try {
      const web = await lab.endpoint("web", { app: "web" });
      const other = await lab.endpoint("other", { app: "other" }, { tcp: [8080] });
      const node = lab.probeIn(lab.node);
      for (const port of [22, 23]) await node.listen("tcp", port);
      const gw = "10.212.30.1";
      const probe = async (): Promise<string[]> => [
        await web.probe.tcp(gw, 22, T),
        await web.probe.tcp(gw, 23, T),
        await other.probe.tcp(gw, 22, T),
        await web.probe.tcp(other.ip, 8080, T),
      ];
      assert.deepEqual(await probe(), ["ok", "ok", "ok", "ok"], "no host policy: open");

      await lab.agent.applyPolicies(hostPolicy("web"), "other-nodes.yaml");
      assert.deepEqual(
        await probe(),
        ["ok", "ok", "ok", "ok"],
        "a host policy for other nodes changes nothing here",
      );

      await lab.agent.applyPolicies(hostPolicy("db"), "db.yaml");
      assert.deepEqual(await probe(), ["ok", "timeout", "timeout", "ok"]);
      const flows = (verdict: string): Flow[] =>
        (lab.agent.observer?.read(filterFromFlags({ verdict: [verdict] })) ?? []).flatMap((r) =>
          "flow" in r ? [r.flow] : [],
        );
      const toHost = flows("DROPPED").filter((f) => f.destination?.identity === 1);
      assert.ok(toHost.length >= 2, JSON.stringify(flows("DROPPED").map((f) => f.Summary)));
      assert.ok(
        toHost.every((f) => f.drop_reason_desc === "POLICY_DENIED" && f.traffic_direction === "INGRESS"),
      );
      assert.ok(
        flows("FORWARDED").some(
          (f) => f.destination?.identity === 1 && f.ingress_allowed_by?.[0]?.name === "db-ssh",
        ),
        "the allowed connection names db-ssh",
      );

      await lab.agent.deletePolicies(hostPolicy("db"), "db.yaml");
      assert.deepEqual(await probe(), ["ok", "ok", "ok", "ok"], "policy removed: open again");
      assert.equal((await lab.agent.datapathDiff()).length, 0);
    } finally {
      await lab.destroy();
    }
  });
});
