/**
 * Attack cases through the agent, on real packets (needs root): source
 * address spoofing, and fail-closed endpoint creation under
 * policyEnforcementMode "always".
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { runRaw } from "../../../src/datapath/exec.js";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

/** Adds a prerouting counter of `match` in a namespace (before conntrack and any policy). */
async function addCounter(netns: string, name: string, match: string): Promise<void> {
  const script = [
    "add table inet e2eprobe",
    "add chain inet e2eprobe pre { type filter hook prerouting priority -400; }",
    `add counter inet e2eprobe ${name}`,
    `add rule inet e2eprobe pre ${match} counter name ${name}`,
  ].join("\n");
  const r = await runRaw(["nft", "-f", "-"], { netns, stdin: script + "\n" });
  if (r.status !== 0) throw new Error(`counter: ${r.stderr}`);
}

async function readCounter(netns: string, name: string): Promise<number> {
  const r = await runRaw(["nft", "-j", "list", "counter", "inet", "e2eprobe", name], { netns });
  const m = /"packets":\s*(\d+)/.exec(r.stdout);
  if (!m) throw new Error(`counter ${name}: ${r.stderr}`);
  return Number(m[1]);
}

const ALLOW_C_TO_B = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: b-from-c, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: b}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: c}}]
`;

describe("agent e2e: attack cases (root)", { skip: skip ?? false }, () => {
  test("an endpoint sending with a source address that is not its own is dropped, even one an allowed peer owns", async () => {
    const lab = await AgentLab.start("spoof");
    try {
      const a = await lab.endpoint("a", { app: "a" });
      const b = await lab.endpoint("b", { app: "b" }, { udp: [53] });
      const c = await lab.endpoint("c", { app: "c" });
      await lab.agent.applyPolicies(ALLOW_C_TO_B, "b.yaml");
      await addCounter(b.view.netns, "dns", "udp dport 53");
      const aNs = a.view.netns;
      // a claims an unallocated pod address and c's address (c is allowed into b).
      await lab.ip(["-n", aNs, "addr", "add", "10.210.0.99/32", "dev", "eth0"]);
      await lab.ip(["-n", aNs, "addr", "add", `${c.ip}/32`, "dev", "eth0"]);
      assert.deepEqual(
        [
          await a.probe.udp(b.ip, 53, T, "10.210.0.99"),
          await a.probe.udp(b.ip, 53, T, c.ip),
          await a.probe.udp(b.ip, 53, T),
        ],
        ["timeout", "timeout", "timeout"],
      );
      assert.equal(await readCounter(b.view.netns, "dns"), 0, "no spoofed datagram may reach b");
      assert.equal(await c.probe.udp(b.ip, 53, T), "ok", "control: c itself is allowed");
      assert.equal(await readCounter(b.view.netns, "dns"), 1, "control: the counter sees c's datagram");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      await lab.destroy();
    }
  });

  test("with policyEnforcementMode always a new endpoint sends and receives nothing until a policy allows it", async () => {
    const lab = await AgentLab.start("fc", { engine: { policyEnforcementMode: "always" } });
    try {
      const old = await lab.endpoint("old", { app: "old" }, { tcp: [80] });
      await lab.agent.applyPolicies(
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: old-open, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: old}}
  ingress: [{fromEntities: [all]}]
  egress: [{toEntities: [all]}]
`,
        "old.yaml",
      );
      // The next address the IPAM hands out; probed from `old` all through the creation.
      const next = "10.210.0.3";
      let creating = true;
      const during: string[] = [];
      const loop = (async () => {
        for (let i = 0; i < 200 && creating; i++) during.push(await old.probe.tcp(next, 80, 150));
      })();
      const fresh = await lab.endpoint("fresh", { app: "fresh" }, { tcp: [80] });
      const right = await Promise.all([
        fresh.probe.tcp(old.ip, 80, T),
        old.probe.tcp(fresh.ip, 80, T),
        fresh.probe.ping(old.ip, T),
        fresh.probe.ping("10.210.0.1", T),
      ]);
      creating = false;
      await loop;
      assert.equal(fresh.ip, next, "the test probed the address the endpoint got");
      assert.deepEqual(right, ["timeout", "timeout", "timeout", "timeout"]);
      assert.ok(during.length > 0, "probed during creation");
      assert.deepEqual(
        during.filter((r) => r !== "timeout"),
        [],
        `every probe during creation was dropped (${during.length} probes)`,
      );
      const v = lab.agent.getEndpoint("default", "fresh");
      assert.deepEqual([v.ingress.enforced, v.egress.enforced], [true, true]);

      await lab.agent.applyPolicies(
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fresh-to-old, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: fresh}}
  egress:
  - toEndpoints: [{matchLabels: {app: old}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`,
        "fresh.yaml",
      );
      assert.deepEqual(
        [await fresh.probe.tcp(old.ip, 80, T), await old.probe.tcp(fresh.ip, 80, T)],
        ["ok", "timeout"],
        "egress opened by policy; ingress still closed",
      );
      await lab.agent.applyPolicies(
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fresh-from-old, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: fresh}}
  ingress: [{fromEndpoints: [{matchLabels: {app: old}}]}]
`,
        "fresh-in.yaml",
      );
      assert.equal(
        await old.probe.tcp(next, 80, 150),
        "ok",
        "control: the creation-time probe can see success",
      );
    } finally {
      await lab.destroy();
    }
  });
});
