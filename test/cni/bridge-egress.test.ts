/**
 * An endpoint chained after `bridge` (needs root): its packets reach the
 * node's forward hook from the bridge, not from its own veth, so egress
 * dispatch (keyed by the host veth) never sees them. The agent does not
 * claim what it does not do: its view, the CLI's table and the log say its
 * egress policy is not enforced, and real packets show that this is the truth.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { endpointRows } from "../../src/cli/commands/endpoint.js";
import { rootSkipReason, T } from "../agent/e2e/harness.js";
import { CniLab } from "./harness.js";

const skip =
  rootSkipReason() ?? (existsSync("/usr/lib/cni/bridge") ? undefined : "needs containernetworking-plugins");

const SERVER_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

describe("membrane-cni after bridge: egress is not claimed (root)", { skip: skip ?? false }, () => {
  test("after bridge, an endpoint selected by an egress policy is shown as egress NOT ENFORCED (view, CLI table), as real packets confirm; one without an egress policy stays open", async () => {
    const c = await CniLab.start("bridge", "10.89.8.0/24");
    try {
      const lab = c.lab;
      await lab.sh(lab.node, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]).catch(() => "");
      await lab.endpoint("other", { app: "other" }, { tcp: [80] });
      await lab.agent.applyPolicies(SERVER_EGRESS, "server-out.yaml");
      const { att } = await c.add("web", "MEMBRANE_LABELS=app:server");
      await c.add("peer", "MEMBRANE_LABELS=app:client");
      const ep = lab.agent.getEndpoint("default", "web");
      assert.equal(ep.egress.enforced, false, "egress not claimed");
      assert.match(ep.egress.unenforced ?? "", /chained after bridge \S+: .*not enforced/);
      const peer = lab.agent.getEndpoint("default", "peer");
      assert.deepEqual([peer.egress.enforced, peer.egress.unenforced], [false, undefined]);
      const rows = endpointRows([ep, peer]);
      assert.equal(rows[1]?.[7], "NOT ENFORCED (bridge)");
      assert.equal(rows[2]?.[7], "open");
      assert.ok(
        lab.logs.some((l) => String(l["msg"]).includes("its egress policy is not enforced")),
        "the agent warns",
      );
      // What the view says is what the kernel does: the policy would refuse this.
      const server = lab.probeIn(att.netns.slice("/run/netns/".length));
      assert.equal(
        await server.tcp(lab.ep("other").ip, 80, T),
        "ok",
        "server -> other passes (not enforced)",
      );
    } finally {
      await c.destroy();
    }
  });
});
