/**
 * Flows from real packets through the agent: every drop names its reason and,
 * for a policy drop, the policy; allowed connections name the allowing rule;
 * metrics pass promtool. Root only.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { RunningAgent } from "../../src/agent/run.js";
import { startFlowAgent } from "./flow-agent.js";
import { filterFromFlags, isFlowRecord, parseMetricsList, type Flow } from "../../src/observe/index.js";
import { Probe } from "../../src/probe/probe.js";
import { assertHubbleStrict } from "../observe/hubble/strict.js";

const skip = process.getuid?.() !== 0 ? "needs root (network namespaces, nftables, NFLOG)" : undefined;

const POLICY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
`;

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 400));
}

const AUDIT_POLICY = POLICY.replace(
  "metadata: {name: api-ingress, namespace: default}",
  'metadata: {name: api-ingress, namespace: default, annotations: {policy.membrane.io/audit: "true"}}',
);

async function withAgent(
  body: (agent: RunningAgent["agent"], probes: Probe[]) => Promise<void>,
  metricsAddress?: string,
  hubbleMetrics?: string,
): Promise<void> {
  const fa = await startFlowAgent("mbf" + randomBytes(2).toString("hex"), "10.202.0.0/24", {
    ...(metricsAddress ? { metricsAddress } : {}),
    ...(hubbleMetrics ? { hubbleMetrics: parseMetricsList([hubbleMetrics]) } : {}),
  });
  const probes: Probe[] = [];
  try {
    await body(fa.running.agent, probes);
    // Every flow of the test (verdicts, drop events, audits) as Hubble's strict parser reads it.
    assertHubbleStrict(fa.running.agent.observer?.read(filterFromFlags({})) ?? [], "agent flows");
  } finally {
    for (const p of probes) p.stop();
    await fa.stop();
  }
}

/** Endpoints api, web and other with a probe each, and the policy applied. */
async function apiWebOther(agent: RunningAgent["agent"], probes: Probe[], policy: string) {
  const mk = (name: string) =>
    agent.createEndpointRequest({ name, namespace: "default", labels: { app: name } });
  const api = await mk("api");
  const web = await mk("web");
  const other = await mk("other");
  await agent.applyPolicies(policy, "policy.yaml");
  const [pApi, pWeb, pOther] = [Probe.start(api.netns), Probe.start(web.netns), Probe.start(other.netns)];
  probes.push(pApi, pWeb, pOther);
  return { api, pApi, pWeb, pOther };
}

describe("flows through the agent (root)", { skip }, () => {
  test(
    "audit mode: would-be drops pass and are recorded as AUDIT with the policy",
    { timeout: 60_000 },
    async () => {
      await withAgent(async (agent, probes) => {
        const { api, pApi, pWeb, pOther } = await apiWebOther(agent, probes, AUDIT_POLICY);
        for (const port of [80, 22]) await pApi.listen("tcp", port);
        assert.equal(await pWeb.tcp(api.ipv4, 22), "ok", "the audit policy's deny lets it through");
        assert.equal(await pOther.tcp(api.ipv4, 80), "ok", "audit-only default deny lets it through");
        await settle();
        const audits = (agent.observer?.read(filterFromFlags({ verdict: ["AUDIT"] })) ?? [])
          .filter(isFlowRecord)
          .map((r) => r.flow);
        const byRule = audits.find((f) => tcpPort(f) === 22);
        assert.ok(byRule, JSON.stringify(audits));
        assert.deepEqual(
          byRule.ingress_denied_by?.map((p) => p.name),
          ["api-ingress"],
        );
        assert.ok(
          audits.some((f) => f.source?.pod_name === "other" && tcpPort(f) === 80),
          JSON.stringify(audits),
        );
        assert.deepEqual(agent.observer?.read(filterFromFlags({ verdict: ["DROPPED"] })), []);
      });
    },
  );

  test(
    "drops carry reason and policy, allows name the rule, metrics pass promtool",
    { timeout: 60_000 },
    async () => {
      await withAgent(async (agent, probes) => {
        const { api, pApi, pWeb, pOther } = await apiWebOther(agent, probes, POLICY);
        for (const port of [80, 22, 443]) await pApi.listen("tcp", port);

        assert.equal(await pWeb.tcp(api.ipv4, 80), "ok");
        assert.equal(await pWeb.tcp(api.ipv4, 22), "timeout");
        assert.equal(await pOther.tcp(api.ipv4, 80), "timeout");
        await settle();

        const flows = (verdict: string): Flow[] =>
          (agent.observer?.read(filterFromFlags({ verdict: [verdict] })) ?? [])
            .filter(isFlowRecord)
            .map((r) => r.flow);
        const dropped = flows("DROPPED");
        const denyRule = dropped.find((f) => tcpPort(f) === 22);
        assert.ok(denyRule, JSON.stringify(dropped));
        assert.equal(denyRule.source?.pod_name, "web");
        assert.equal(denyRule.destination?.pod_name, "api");
        assert.equal(denyRule.traffic_direction, "INGRESS");
        assert.equal(denyRule.drop_reason_desc, "POLICY_DENY");
        assert.deepEqual(
          denyRule.ingress_denied_by?.map((p) => [p.kind, p.namespace, p.name]),
          [["CiliumNetworkPolicy", "default", "api-ingress"]],
        );
        const defaultDeny = dropped.find((f) => f.source?.pod_name === "other");
        assert.ok(defaultDeny, JSON.stringify(dropped));
        assert.equal(defaultDeny.drop_reason_desc, "POLICY_DENIED");
        assert.equal(defaultDeny.ingress_denied_by, undefined);

        const allowed = flows("FORWARDED").find((f) => tcpPort(f) === 80);
        assert.ok(allowed);
        assert.deepEqual(
          allowed.ingress_allowed_by?.map((p) => p.name),
          ["api-ingress"],
        );

        // Metrics (--hubble-metrics with context options): exposition passes promtool and counts
        // the drops by pod and namespace, the allowed SYN, the allowed port (not the denied one).
        const text = await (await fetch(`http://${metricsAddress(agent)}/metrics`)).text();
        assert.match(text, /^hubble_drop_total\{source="default\/web",destination="default",reason="POLICY_DENY",protocol="TCP"\} [1-9]/m); // prettier-ignore
        assert.match(text, /^hubble_drop_total\{source="default\/other",destination="default",reason="POLICY_DENIED",protocol="TCP"\} [1-9]/m); // prettier-ignore
        assert.match(text, /^hubble_flows_processed_total\{.*\} [1-9]/m);
        assert.match(text, /^hubble_tcp_flags_total\{flag="SYN",family="IPv4"\} [1-9]/m);
        assert.match(text, /^hubble_port_distribution_total\{protocol="TCP",port="80"\} [1-9]/m);
        assert.doesNotMatch(text, /^hubble_port_distribution_total\{protocol="TCP",port="22"\}/m);
        assert.match(text, /^hubble_policy_verdicts_total\{direction="ingress",match="[^"]+",action="forwarded",source_app="web",destination_app="api"\} [1-9]/m); // prettier-ignore
        assert.doesNotMatch(text, /^hubble_icmp_total/m, "icmp is not enabled");
        if (spawnSync("sh", ["-c", "command -v promtool"]).status === 0) {
          const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
          assert.equal(r.status, 0, r.stdout + r.stderr);
        }
      }, "127.0.0.1:0", "flow drop:sourceContext=pod;destinationContext=namespace tcp port-distribution policy:labelsContext=source_app,destination_app"); // prettier-ignore
    },
  );
});

function metricsAddress(agent: RunningAgent["agent"]): string {
  const a = agent.observer?.metricsAddress;
  assert.ok(a, "metrics server not started");
  return a;
}

function tcpPort(f: Flow): number | undefined {
  return f.l4 && "TCP" in f.l4 ? f.l4.TCP.destination_port : undefined;
}
