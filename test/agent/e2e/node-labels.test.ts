/**
 * Node labels in the kernel on one node (needs root): the agent's own labels
 * (engine config nodeLabels, `--node-labels`) decide whether fromNodes
 * selects the node. With allowLocalhost: policy the node's connections to a
 * pod need an allow: one by fromNodes matching this node's labels lets them
 * in, one by labels this node does not carry does not. Real packets from the
 * node namespace to two endpoints.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-edge, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromNodes: [{matchLabels: {role: edge}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-workers, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromNodes: [{matchLabels: {role: worker}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

describe("agent e2e: fromNodes by the node's labels (root)", { skip: rootSkipReason() ?? false }, () => {
  test("a node labelled role=edge reaches the pod that allows edge nodes, not the one that allows workers", async () => {
    const lab = await AgentLab.start("rsn", {
      engine: { allowLocalhost: "policy", nodeLabels: { role: "edge" } },
      podCidr4: "10.211.10.0/24",
    });
    try {
      const a = await lab.endpoint("a", { app: "a" }, { tcp: [8080] });
      const b = await lab.endpoint("b", { app: "b" }, { tcp: [8080] });
      await lab.agent.applyPolicies(POLICY, "nodes.yaml");
      const node = lab.probeIn(lab.node);
      assert.deepEqual([await node.tcp(a.ip, 8080, T), await node.tcp(b.ip, 8080, T)], ["ok", "timeout"]);
    } finally {
      await lab.destroy();
    }
  });
});
