/**
 * Agent death and restart (needs root): the kernel keeps enforcing while the
 * agent is dead (kill -9 of a separate `membrane agent` process), and a
 * restarted agent keeps identities and addresses and finds nothing to change.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { EndpointView } from "../../../src/agent/agent.js";
import { AgentClient } from "../../../src/agent/client.js";
import { AgentLab, AgentProcess, rootSkipReason, SERVER_FROM_CLIENT, T } from "./harness.js";

const skip = rootSkipReason();

describe("agent e2e: death and restart (root)", { skip: skip ?? false }, () => {
  test("after kill -9 a long-lived connection still works, denied traffic is still denied, and the restarted agent changes nothing", async () => {
    const lab = await AgentLab.prepare("kill");
    const procs: AgentProcess[] = [];
    try {
      procs.push(await AgentProcess.start(lab.options));
      const api = new AgentClient({ socketPath: lab.options.socketPath, timeoutMs: 30_000 });
      const create = async (name: string): Promise<EndpointView> =>
        (await api.request("POST", "/v1/endpoints", {
          name,
          namespace: "default",
          labels: { app: name },
        })) as EndpointView;
      const server = await lab.attach(await create("server"), { tcp: [80, 81] });
      const client = await lab.attach(await create("client"));
      const other = await lab.attach(await create("other"));
      await api.request("POST", "/v1/policies", { text: SERVER_FROM_CLIENT, file: "server.yaml" });
      const identities = await api.request("GET", "/v1/identities");
      // Everything but the engine's revision counter, which restarts with the process.
      const listEndpoints = async (): Promise<Omit<EndpointView, "policyRevision">[]> =>
        ((await api.request("GET", "/v1/endpoints")) as EndpointView[])
          .map(({ policyRevision: _r, ...rest }) => rest)
          .sort((a, b) => a.id - b.id);
      const endpoints = await listEndpoints();

      assert.deepEqual(
        [
          await client.probe.open("long", server.ip, 80, T),
          await other.probe.tcp(server.ip, 80, T),
          await client.probe.tcp(server.ip, 81, T),
        ],
        ["ok", "timeout", "timeout"],
        "before the kill",
      );

      const first = procs[0] as AgentProcess;
      first.kill("SIGKILL");
      await first.waitExit();
      await assert.rejects(api.request("GET", "/v1/status"), /Cannot reach the agent/);
      assert.deepEqual(
        [
          await client.probe.send("long", T),
          await other.probe.tcp(server.ip, 80, T),
          await client.probe.tcp(server.ip, 81, T),
          await client.probe.tcp(server.ip, 80, T),
          await client.probe.send("long", T),
        ],
        ["ok", "timeout", "timeout", "ok", "ok"],
        "while the agent is dead: established flows and policy carry on",
      );

      const second = await AgentProcess.start(lab.options);
      procs.push(second);
      const started = second.started() ?? {};
      assert.equal(
        started["kernelOps"],
        0,
        `"agent started" reports no kernel change: ${JSON.stringify(started)}`,
      );
      assert.equal(started["endpoints"], 3);
      assert.equal(started["policies"], 1);
      assert.deepEqual(await api.request("GET", "/v1/datapath/diff"), { diff: [] });
      const status = (await api.request("GET", "/v1/status")) as { lastApply: { ops: number } };
      assert.equal(status.lastApply.ops, 0);
      assert.deepEqual(await api.request("GET", "/v1/identities"), identities, "same identities");
      assert.deepEqual(await listEndpoints(), endpoints, "same endpoints, identities and addresses");
      assert.deepEqual(
        [
          await client.probe.send("long", T),
          await other.probe.tcp(server.ip, 80, T),
          await client.probe.tcp(server.ip, 80, T),
        ],
        ["ok", "timeout", "ok"],
        "after the restart",
      );
    } finally {
      for (const p of procs) {
        p.kill("SIGTERM");
        await p.waitExit().catch(() => p.kill("SIGKILL"));
      }
      await lab.destroy();
    }
  });

  test("a restarted agent keeps identity numbers and endpoint addresses, and applies nothing", async () => {
    const lab = await AgentLab.start("rst");
    try {
      // Identities allocated in an order that a fresh allocator would not reproduce.
      for (const [name, app] of [
        ["z", "zeta"],
        ["a", "alpha"],
        ["m", "mu"],
        ["a2", "alpha"],
      ] as const) {
        await lab.endpoint(name, { app }, { tcp: [80] });
      }
      await lab.agent.deleteEndpointRequest("default", "z"); // a hole in the addresses and identities
      lab.ep("z").probe.stop();
      lab.endpoints.delete("z");
      await lab.endpoint("late", { app: "late" }, { tcp: [80] });
      await lab.agent.applyPolicies(
        `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: mu, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: mu}}
  ingress: [{fromEndpoints: [{matchLabels: {app: alpha}}]}]
`,
        "mu.yaml",
      );
      const summary = () =>
        lab.agent
          .listEndpoints()
          .map((e) => `${e.name} id=${e.id} identity=${e.identity} ${e.ipv4} ${e.netns} ${e.hostIfname}`)
          .sort();
      const before = summary();
      const ids = lab.agent.identities();
      await lab.stopAgent();
      const logsBefore = lab.logs.length;
      await lab.startAgent();
      const started = lab.logs.slice(logsBefore).find((l) => l["msg"] === "agent started");
      assert.equal(started?.["kernelOps"], 0, JSON.stringify(started));
      assert.deepEqual(summary(), before);
      assert.deepEqual(lab.agent.identities(), ids);
      assert.deepEqual(await lab.agent.datapathDiff(), []);
      const mu = lab.ep("m").ip;
      assert.deepEqual(
        [
          await lab.ep("a").probe.tcp(mu, 80, T),
          await lab.ep("a2").probe.tcp(mu, 80, T),
          await lab.ep("late").probe.tcp(mu, 80, T),
        ],
        ["ok", "ok", "timeout"],
      );
      // A new endpoint after the restart gets a fresh address and identity, not a live one.
      const fresh = await lab.endpoint("fresh", { app: "fresh" });
      const live = lab.agent.listEndpoints().filter((e) => e.name !== "fresh");
      assert.ok(!live.some((e) => e.ipv4 === fresh.ip), `fresh address ${fresh.ip} is not in use`);
      assert.ok(!live.some((e) => e.identity === fresh.view.identity), "fresh identity is not in use");
    } finally {
      await lab.destroy();
    }
  });
});
