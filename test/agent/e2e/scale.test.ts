/**
 * 500 endpoints on one node (needs root): a policy selecting a label subset
 * checked with real connections, a kernel that matches the desired state
 * exactly, and endpoints created one by one through the agent (the time it
 * takes is printed as a measurement, never asserted: the machine may be busy).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { Ipam } from "../../../src/agent/ipam.js";
import { KEYS, type EndpointRecordV1 } from "../../../src/agent/records.js";
import { EmbeddedStore } from "../../../src/store/embedded.js";
import pino from "pino";
import { AgentLab, rootSkipReason, since, T } from "./harness.js";

const skip = rootSkipReason();
const N = 500;

const labelsOf = (i: number): Record<string, string> => ({
  app: `app${i % 10}`,
  tier: i % 5 === 0 ? "db" : "web",
});

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: default}
spec:
  endpointSelector: {matchLabels: {tier: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: app1}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

/** Applies POLICY and checks real connections between a few of the N endpoints, and the kernel. */
async function checkSubsetPolicy(lab: AgentLab): Promise<void> {
  const rep = await lab.agent.applyPolicies(POLICY, "db.yaml");
  assert.ok(rep.kernelOps > 0, "the policy changed the kernel");
  // ep0 (db, app0), ep5 (db, app5), ep1 (web, app1), ep2 (web, app2), ep11 (web, app1), ep499 (web, app9).
  const view = (i: number) => lab.agent.getEndpoint("default", `ep${i}`);
  for (const i of [0, 5, 1, 2, 11, 499]) await lab.attach(view(i), { tcp: [80, 81] });
  const tcp = async (from: number, to: number, port: number): Promise<string> =>
    `ep${from}>ep${to}:${port} ${await lab.ep(`ep${from}`).probe.tcp(view(to).ipv4, port, T)}`;
  const got = await Promise.all([
    tcp(1, 0, 80),
    tcp(11, 5, 80),
    tcp(1, 0, 81),
    tcp(2, 0, 80),
    tcp(499, 5, 80),
    tcp(0, 2, 80),
    tcp(2, 499, 81),
    tcp(0, 5, 80),
  ]);
  assert.deepEqual(got, [
    "ep1>ep0:80 ok",
    "ep11>ep5:80 ok",
    "ep1>ep0:81 timeout",
    "ep2>ep0:80 timeout",
    "ep499>ep5:80 timeout",
    "ep0>ep2:80 ok",
    "ep2>ep499:81 ok",
    "ep0>ep5:80 timeout",
  ]);
  const enforced = lab.agent.listEndpoints().filter((e) => e.ingress.enforced).length;
  assert.equal(enforced, N / 5, "exactly the tier=db endpoints are in ingress default deny");
  assert.deepEqual(await lab.agent.datapathDiff(), []);
}

describe("agent e2e: 500 endpoints on one node (root)", { skip: skip ?? false }, () => {
  test(`${N} endpoints restored by the agent from its store: a label-subset policy is enforced exactly`, async () => {
    const lab = await AgentLab.prepare("big", { podCidr4: "10.210.0.0/22" });
    try {
      // The records a previous agent run would have left (records.ts), written straight into the store.
      const store = await EmbeddedStore.open({
        dir: join(lab.options.stateDir, "store"),
        logger: pino({ level: "silent" }),
      });
      try {
        const ipam = new Ipam({ store, ipv4: lab.options.podCidr4 });
        for (let i = 0; i < N; i++) {
          const key = `default/ep${i}`;
          const id = i + 1;
          const rec: EndpointRecordV1 = {
            v: 1,
            name: `ep${i}`,
            namespace: "default",
            labels: labelsOf(i),
            id,
            netns: `${lab.options.netnsPrefix}ep${id}`,
            hostIfname: `mbr${id}`,
            ipv4: (await ipam.allocate(key)).ipv4,
          };
          await store.put(KEYS.endpoints + key, JSON.stringify(rec));
        }
      } finally {
        await store.close();
      }
      const t0 = performance.now();
      await lab.startAgent();
      console.log(JSON.stringify({ restoredEndpoints: N, agentStartMs: since(t0) }));
      assert.equal(lab.agent.listEndpoints().length, N);
      await checkSubsetPolicy(lab);
    } finally {
      await lab.destroy();
    }
  });

  test(`${N} endpoints are created one by one through the agent, each with its own address, and the kernel matches`, async () => {
    const lab = await AgentLab.start("scale", { podCidr4: "10.210.0.0/22" });
    try {
      const t0 = performance.now();
      const per: number[] = [];
      for (let i = 0; i < N; i++) {
        const t = performance.now();
        await lab.agent.createEndpointRequest({ name: `ep${i}`, namespace: "default", labels: labelsOf(i) });
        per.push(performance.now() - t);
      }
      const total = since(t0);
      const sorted = [...per].sort((a, b) => a - b);
      const pct = (q: number): number =>
        Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
      const timing = {
        created: per.length,
        totalMs: total,
        p50Ms: pct(0.5),
        p99Ms: pct(0.99),
        first50AvgMs: Math.round(per.slice(0, 50).reduce((a, b) => a + b, 0) / Math.min(50, per.length)),
        last50AvgMs: Math.round(per.slice(-50).reduce((a, b) => a + b, 0) / Math.min(50, per.length)),
      };
      console.log(JSON.stringify(timing));
      const eps = lab.agent.listEndpoints();
      assert.equal(eps.length, N);
      assert.equal(new Set(eps.map((e) => e.ipv4)).size, N, "every endpoint has its own address");
      await checkSubsetPolicy(lab);
    } finally {
      await lab.destroy();
    }
  });
});
