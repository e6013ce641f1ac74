/**
 * CIDR and world policies through the agent, on real packets (needs root).
 *
 *   endpoints client, peer  ── node netns ── out0 <── veth ──> eth0  "outside" netns
 *                                  192.0.2.1/24                  192.0.2.10/24, 192.0.2.200/24
 *                                  198.51.100.0/24 via .10       198.51.100.7/32
 *
 * The outside namespace routes everything back through the node, so replies
 * (and traffic it starts) cross the node's forward path like real outside traffic.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { Probe } from "../../../src/probe/probe.js";
import { AgentLab, rootSkipReason, T } from "./harness.js";

const skip = rootSkipReason();

const cnp = (spec: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
${spec
  .trim()
  .split("\n")
  .map((l) => "  " + l)
  .join("\n")}
`;

const EGRESS_TARGETS = ["192.0.2.10", "192.0.2.200", "198.51.100.7", "peer"] as const;

const egressCases: { name: string; policy?: string; want: string[] }[] = [
  {
    name: "no policy: the client reaches every outside address and the peer",
    want: ["192.0.2.10 ok", "192.0.2.200 ok", "198.51.100.7 ok", "peer ok"],
  },
  {
    name: "egress toCIDR allows exactly that /32",
    policy: cnp(`
endpointSelector: {matchLabels: {app: client}}
egress:
- toCIDR: [192.0.2.10/32]`),
    want: ["192.0.2.10 ok", "192.0.2.200 timeout", "198.51.100.7 timeout", "peer timeout"],
  },
  {
    name: "toCIDRSet except blocks the sub-range",
    policy: cnp(`
endpointSelector: {matchLabels: {app: client}}
egress:
- toCIDRSet:
  - {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}`),
    want: ["192.0.2.10 ok", "192.0.2.200 timeout", "198.51.100.7 timeout", "peer timeout"],
  },
  {
    name: "toCIDR does not select pods: a /8 around the pod CIDR does not reach the peer",
    policy: cnp(`
endpointSelector: {matchLabels: {app: client}}
egress:
- toCIDR: [10.0.0.0/8, 192.0.2.200/32]`),
    want: ["192.0.2.10 timeout", "192.0.2.200 ok", "198.51.100.7 timeout", "peer timeout"],
  },
  {
    name: "the world entity reaches every outside address but not the peer",
    policy: cnp(`
endpointSelector: {matchLabels: {app: client}}
egress:
- toEntities: [world]`),
    want: ["192.0.2.10 ok", "192.0.2.200 ok", "198.51.100.7 ok", "peer timeout"],
  },
  {
    name: "an egressDeny of a /24 beats the world allow for every address in it",
    policy: cnp(`
endpointSelector: {matchLabels: {app: client}}
egress:
- toEntities: [world]
egressDeny:
- toCIDRSet: [{cidr: 198.51.100.0/24}]
- toCIDR: [192.0.2.192/26]`),
    want: ["192.0.2.10 ok", "192.0.2.200 timeout", "198.51.100.7 timeout", "peer timeout"],
  },
];

describe("agent e2e: CIDR and world through an outside namespace (root)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  let outside: Probe;
  const out = (): string => `${lab.prefix}-out`;
  before(async () => {
    lab = await AgentLab.start("cidr");
    await lab.endpoint("client", { app: "client" }, { tcp: [80] });
    await lab.endpoint("peer", { app: "peer" }, { tcp: [80], udp: [53] });
    // The outside namespace, wired to the node like an uplink.
    await lab.outsideNamespace(["192.0.2.200/24", "198.51.100.7/32"]);
    outside = lab.probeIn(out());
    await outside.listen("tcp", 80);
  });
  after(async () => {
    await lab?.destroy();
  });

  for (const c of egressCases) {
    test(c.name, async () => {
      if (c.policy) await lab.agent.applyPolicies(c.policy, "p.yaml");
      const client = lab.ep("client").probe;
      const got = await Promise.all(
        EGRESS_TARGETS.map(
          async (t) => `${t} ${await client.tcp(t === "peer" ? lab.ep("peer").ip : t, 80, T)}`,
        ),
      );
      assert.deepEqual(got, c.want);
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    });
  }

  test("ingress fromCIDR admits one outside source address and drops another", async () => {
    await lab.agent.applyPolicies(
      cnp(`
endpointSelector: {matchLabels: {app: peer}}
ingress:
- fromCIDR: [192.0.2.10/32]`),
      "p.yaml",
    );
    const peer = lab.ep("peer").ip;
    assert.deepEqual(
      [
        await outside.udp(peer, 53, T, "192.0.2.10"),
        await outside.udp(peer, 53, T, "192.0.2.200"),
        await outside.tcp(peer, 80, T),
        await lab.ep("client").probe.tcp(peer, 80, T),
      ],
      ["ok", "timeout", "ok", "timeout"],
    );
  });
});
