/**
 * "What would this change break?" through the agent, on flows of real packets:
 * `POST /v1/impact` (and `membrane apply --dry-run --impact`) replays the
 * connections the ring saw against the policy set after the change and lists
 * the verdicts that would change, with the rule responsible; the agent's
 * policies and kernel stay as they were. Root only.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AgentClient } from "../../src/agent/client.js";
import type { RunningAgent } from "../../src/agent/run.js";
import { startFlowAgent, type FlowAgent } from "./flow-agent.js";
import { filterFromFlags, isFlowRecord } from "../../src/observe/index.js";
import type { ImpactReport } from "../../src/policy/impact.js";
import { Probe } from "../../src/probe/probe.js";
import { cliAsync as cli } from "../cli/run-cli.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces, nftables, NFLOG)" : undefined;

const policy = (rules: string): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-in, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
${rules}`;
const rule = (from: string, port: number): string =>
  `  - fromEndpoints: [{matchLabels: {app: ${from}}}]\n    toPorts: [{ports: [{port: "${port}", protocol: TCP}]}]\n`;

/** Now: web and batch reach api:80; web -> api:81 is dropped. */
const NOW = policy(rule("web", 80) + rule("batch", 80));
/** The change: batch keeps 80, web loses 80 and gains 81. */
const CHANGE = policy(rule("batch", 80) + rule("web", 81));

type Report = ImpactReport & { flowsRead: number };

describe("impact of a policy change, replayed on the flows seen (root)", { skip }, () => {
  const prefix = "mbi" + randomBytes(2).toString("hex");
  let fa: FlowAgent | undefined;
  let running: RunningAgent | undefined;
  const probes: Probe[] = [];
  let api: AgentClient;
  let socketPath = "";
  let dir = "";

  before(async () => {
    fa = await startFlowAgent(prefix, "10.203.0.0/24");
    ({ running, socketPath, dir } = fa);
    const agent = running.agent;
    const mk = (name: string) =>
      agent.createEndpointRequest({ name, namespace: "default", labels: { app: name } });
    const apiEp = await mk("api");
    const web = await mk("web");
    const batch = await mk("batch");
    await agent.applyPolicies(NOW, "now.yaml");
    const [pApi, pWeb, pBatch] = [Probe.start(apiEp.netns), Probe.start(web.netns), Probe.start(batch.netns)];
    probes.push(pApi, pWeb, pBatch);
    for (const port of [80, 81]) await pApi.listen("tcp", port);
    assert.equal(await pWeb.tcp(apiEp.ipv4, 80), "ok");
    assert.equal(await pWeb.tcp(apiEp.ipv4, 80), "ok");
    assert.equal(await pBatch.tcp(apiEp.ipv4, 80), "ok");
    assert.notEqual(await pWeb.tcp(apiEp.ipv4, 81, 500), "ok");
    // The flows reach the ring through NFLOG: wait until the drop is there.
    for (let i = 0; i < 50; i++) {
      const drops = (agent.observer?.read(filterFromFlags({ verdict: ["DROPPED"] })) ?? []).filter(
        isFlowRecord,
      );
      if (drops.length > 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    api = new AgentClient({ socketPath });
  });
  after(async () => {
    for (const p of probes) p.stop();
    await fa?.stop();
  });

  test("a change lists allowed -> denied and denied -> allowed connections with the rules responsible, and applies nothing", async () => {
    const before = await api.request("GET", "/v1/policies");
    const r = (await api.request("POST", "/v1/impact", { text: CHANGE, file: "change.yaml" })) as Report;
    assert.equal(r.allowedToDenied.length, 1, JSON.stringify(r));
    const lost = r.allowedToDenied[0]!;
    assert.deepEqual(
      [lost.from, lost.to, lost.port, lost.before, lost.after],
      ["default/web", "default/api", "TCP/80", "allow", "deny"],
    );
    assert.ok(lost.flows >= 2, "both connections of web -> api:80 are counted");
    assert.match(lost.responsible.join("\n"), /default\/api-in spec\.ingress\[0\]: allowed it before/);
    assert.equal(r.deniedToAllowed.length, 1, JSON.stringify(r));
    const gained = r.deniedToAllowed[0]!;
    assert.deepEqual([gained.from, gained.to, gained.port], ["default/web", "default/api", "TCP/81"]);
    assert.match(gained.responsible.join("\n"), /spec\.ingress\[1\]: allows \(ingress\)/);
    assert.ok(r.unchanged >= 1, "batch -> api:80 stays allowed");
    assert.deepEqual(await api.request("GET", "/v1/policies"), before, "nothing applied");
    assert.deepEqual(await running!.agent.datapathDiff(), []);
  });

  test("deleting the policy would open what it denied; the CLI shows it and -o json is the API's report", async () => {
    const file = join(dir, "now.yaml");
    await writeFile(file, NOW);
    const r = await cli("delete", "--dry-run", "--impact", "-f", file, "--socket", socketPath, "-o", "json");
    assert.equal(r.code, 0, r.stderr);
    const rep = JSON.parse(r.stdout) as Report;
    assert.deepEqual(rep.allowedToDenied, []);
    assert.deepEqual(
      rep.deniedToAllowed.map((c) => [c.from, c.port, c.responsible.join("; ")]),
      [["default/web", "TCP/81", "ingress: no longer under policy"]],
    );
    const text = await cli("apply", "--dry-run", "--impact", "-f", file, "--socket", socketPath);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /0 would be denied, 0 would be allowed/);
  });

  test("bad input changes nothing: a policy file with an error is refused naming it; --impact needs --dry-run", async () => {
    await assert.rejects(
      api.request("POST", "/v1/impact", { text: CHANGE.replace("toPorts", "toPortz"), file: "bad.yaml" }),
      /Cannot apply bad\.yaml: 1 problem/,
    );
    await assert.rejects(
      api.request("POST", "/v1/impact", { text: CHANGE, file: "x.yaml", number: -1 }),
      /number/,
    );
    const file = join(dir, "change.yaml");
    await writeFile(file, CHANGE);
    const r = await cli("apply", "--impact", "-f", file, "--socket", socketPath);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--impact without --dry-run/);
  });
});
