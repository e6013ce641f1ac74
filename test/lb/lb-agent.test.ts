/**
 * Services through the agent, end to end (root: netns, nftables, real packets):
 * `membrane apply -f` of Service and EndpointSlice YAML, `membrane get services`,
 * balancing to the pods a selector picks, policy after the DNAT, toServices, the flows'
 * destination_service (Hubble's), and a bad file refused whole with field paths.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runRaw } from "../../src/datapath/exec.js";
import { MembraneError } from "../../src/errors.js";
import type { ServiceView } from "../../src/lb/types.js";
import { AgentLab, rootSkipReason, T } from "../agent/e2e/harness.js";
import { ROOT } from "../cli/run-cli.js";
import { serviceRows } from "../../src/cli/commands/apply-lb.js";
import { filterFromFlags } from "../../src/observe/flags.js";
import { isFlowRecord, type Flow, type FlowRecord } from "../../src/observe/flow.js";
import { formatJson } from "../../src/observe/printer.js";
import { assertHubbleStrict, parseHubbleStrict } from "../observe/hubble/strict.js";

const skip = rootSkipReason();

const SERVICES = `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default, labels: {tier: front}}
spec:
  clusterIP: 10.96.0.50
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: default}
spec:
  type: NodePort
  ports: [{port: 81, targetPort: 8080, nodePort: 30081}]
`;

const sliceOf = (ready: string, terminating: string): string => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: legacy-1, namespace: default, labels: {kubernetes.io/service-name: legacy}}
addressType: IPv4
ports: [{port: 8080}]
endpoints:
  - {addresses: ["${ready}"], conditions: {ready: true}}
  - {addresses: ["${terminating}"], conditions: {ready: false, serving: true, terminating: true}}
`;

const WEB_FROM_CLIENT = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: web}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
`;

const CLIENT_TO_WEB_SERVICE = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: client, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toServices: [{k8sService: {serviceName: web, namespace: default}}]
`;

describe("services through the agent (root: netns, nftables, real packets)", { skip: skip ?? false }, () => {
  let lab: AgentLab;
  let dir: string;
  const cli = async (
    ...args: string[]
  ): Promise<{ status: number | null; stdout: string; stderr: string }> => {
    const socket = lab.options.socketPath as string;
    return runRaw([process.execPath, join(ROOT, "bin/membrane.js"), ...args, "--socket", socket]);
  };

  before(async () => {
    // Dual-stack pods and service CIDRs (the IPv6 test below); flows: destination_service.
    lab = await AgentLab.start("hlb", {
      observe: true,
      podCidr6: "fd00:210::/64",
      lb: {
        serviceCidr: "10.96.0.0/16",
        serviceCidrSecondary: "fd00:96::/112",
        nodePortRange: [30000, 32767],
      },
    });
    dir = await mkdtemp(join(tmpdir(), "hlb-svc-"));
    await lab.endpoint("web1", { app: "web" }, { tcp: [8080] });
    await lab.endpoint("web2", { app: "web" }, { tcp: [8080] });
    await lab.endpoint("client", { app: "client" });
    await lab.endpoint("other", { app: "other" });
  });
  after(async () => {
    await lab?.destroy();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** The node's nftables tables, and the policy table's chains. */
  const kernel = async (): Promise<{ tables: string[]; chains: string[] }> => {
    const t = await runRaw(["nft", "list", "tables"], { netns: lab.node });
    const c = await runRaw(["nft", "list", "table", "inet", lab.options.table as string], {
      netns: lab.node,
    });
    return {
      tables: t.stdout.split("\n").filter((l) => l.startsWith("table ")),
      chains: [...c.stdout.matchAll(/^\s*chain (\S+) \{/gm)].map((m) => m[1] as string),
    };
  };

  test("no Service, no cost: neither the LB table nor the policy chains of service connections", async () => {
    const k = await kernel();
    assert.ok(k.tables.includes(`table inet ${lab.options.table as string}`), k.tables.join(", "));
    assert.ok(!k.tables.some((t) => t.endsWith("_lb")), k.tables.join(", "));
    assert.ok(!k.chains.includes("lb_pre_c") && !k.chains.includes("lb_out_c"), k.chains.join(", "));
  });

  test("membrane apply -f takes Services and an EndpointSlice; get services shows backends and their state", async () => {
    await writeFile(
      join(dir, "svc.yaml"),
      SERVICES + "---\n" + sliceOf(lab.ep("web1").ip, lab.ep("web2").ip),
    );
    const r = await cli("apply", "-f", join(dir, "svc.yaml"));
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /service\/default\/web\s+created/);
    const g = await cli("get", "services", "-o", "json");
    assert.equal(g.status, 0, g.stderr);
    const views = JSON.parse(g.stdout) as ServiceView[];
    const web = views.find((v) => v.name === "web");
    assert.equal(web?.clusterIP, "10.96.0.50");
    assert.deepEqual(
      web?.backends.map((b) => b.state),
      ["active", "active"],
    );
    const legacy = views.find((v) => v.name === "legacy");
    assert.equal(legacy?.type, "NodePort");
    assert.match(legacy?.clusterIP ?? "", /^10\.96\./, "a ClusterIP was allocated");
    assert.deepEqual(legacy?.ports, ["81:30081/TCP"]);
    assert.deepEqual(
      legacy?.backends.map((b) => `${b.address} ${b.state}`).sort(),
      [`${lab.ep("web1").ip}:8080 active`, `${lab.ep("web2").ip}:8080 terminating`].sort(),
    );
    const rows = serviceRows(views).map((r) => r.join(" "));
    assert.ok(
      rows.some((r) => r.includes("legacy NodePort") && r.includes("(terminating)")),
      rows.join("\n"),
    );
  });

  test("the selector's pods answer on the ClusterIP; the slice's ready backend on the NodePort", async () => {
    const client = lab.ep("client").probe;
    const before1 = await lab.ep("web1").probe.count("tcp", 8080);
    const before2 = await lab.ep("web2").probe.count("tcp", 8080);
    for (let i = 0; i < 16; i++) assert.equal(await client.tcp("10.96.0.50", 80, T), "ok");
    const got1 = (await lab.ep("web1").probe.count("tcp", 8080)) - before1;
    const got2 = (await lab.ep("web2").probe.count("tcp", 8080)) - before2;
    assert.equal(got1 + got2, 16);
    assert.ok(got1 > 0 && got2 > 0, `both pods take connections: ${got1}/${got2}`);
    const nodeIp = "10.210.0.1"; // the node's gateway address on the pod network (harness podCidr4)
    const b2 = await lab.ep("web2").probe.count("tcp", 8080);
    for (let i = 0; i < 4; i++) assert.equal(await client.tcp(nodeIp, 30081, T), "ok");
    assert.equal(
      await lab.ep("web2").probe.count("tcp", 8080),
      b2,
      "the terminating backend gets no new connection",
    );
  });

  test("policy at the backend judges the client's identity through the ClusterIP; toServices allows the service", async () => {
    await lab.agent.applyPolicies(WEB_FROM_CLIENT + "---\n" + CLIENT_TO_WEB_SERVICE, "policies.yaml");
    try {
      assert.equal(await lab.ep("client").probe.tcp("10.96.0.50", 80, T), "ok");
      assert.equal(await lab.ep("other").probe.tcp("10.96.0.50", 80, T), "timeout");
      // toServices (egress of client) selects the service's pods: another address stays denied.
      assert.equal(await lab.ep("client").probe.tcp(lab.ep("other").ip, 8080, T), "timeout");
      serviceFlows();
    } finally {
      await lab.agent.deletePolicies(WEB_FROM_CLIENT + "---\n" + CLIENT_TO_WEB_SERVICE, "policies.yaml");
    }
  });

  /**
   * Hubble's destination_service: the flows of a connection to the ClusterIP name the Service (the
   * LB table logs the frontend before the DNAT), the same client's flow to a pod address does not;
   * --to-service selects them; Hubble's strict JSON parser takes them.
   */
  const serviceFlows = (): void => {
    const all = (lab.agent.observer?.read(filterFromFlags({})) ?? []).filter(isFlowRecord).map((r) => r.flow);
    const web = { name: "web", namespace: "default" };
    const toWeb = (src: string, verdict: string): Flow[] =>
      all.filter((f) => f.IP?.source === lab.ep(src).ip && f.verdict === verdict && f.IP.destination !== lab.ep("other").ip); // prettier-ignore
    const allowed = toWeb("client", "FORWARDED");
    const denied = toWeb("other", "DROPPED");
    assert.ok(allowed.length > 0 && denied.length > 0, `flows through the ClusterIP: ${JSON.stringify(all)}`);
    for (const f of [...allowed, ...denied]) {
      assert.deepEqual(f.destination_service, web, JSON.stringify(f));
      assert.ok([lab.ep("web1").ip, lab.ep("web2").ip].includes(f.IP?.destination ?? ""), "after the DNAT");
    }
    const direct = all.filter((f) => f.IP?.destination === lab.ep("other").ip);
    assert.ok(direct.length > 0 && direct.every((f) => f.destination_service === undefined), JSON.stringify(direct)); // prettier-ignore
    const selected = (lab.agent.observer?.read(filterFromFlags({ toService: ["default/we"] })) ?? []).filter(isFlowRecord); // prettier-ignore
    assert.equal(selected.length, all.filter((f) => f.destination_service?.name === "web").length);
    assert.equal(lab.agent.observer?.read(filterFromFlags({ toService: ["kube-system/web"] })).length, 0);
    assert.ok(assertHubbleStrict(selected, "service flows") > 0);
    const parsed = parseHubbleStrict(formatJson(selected[0] as FlowRecord));
    assert.deepEqual((parsed["flow"] as Record<string, unknown>)["destination_service"], web);
  };

  test("dual-stack: a RequireDualStack Service gets a ClusterIP of each family; the pods answer on both", async () => {
    const dual = `apiVersion: v1
kind: Service
metadata: {name: web6, namespace: default}
spec:
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv6, IPv4]
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
`;
    // Through the agent's API directly (the CLI path is the test above; a CLI start costs seconds here).
    await lab.agent.lb.apply(dual, "dual.yaml");
    const views = lab.agent.lb.list();
    const v = views.find((x) => x.name === "web6");
    const [six, four] = v?.clusterIPs ?? [];
    assert.match(six ?? "", /^fd00:96::/, "IPv6 first (ipFamilies), from the IPv6 service CIDR");
    assert.match(four ?? "", /^10\.96\./);
    const v6s = [lab.ep("web1").view.ipv6, lab.ep("web2").view.ipv6].map((a) => `[${a ?? ""}]:8080`);
    assert.deepEqual(
      v?.backends
        .map((b) => b.address)
        .filter((a) => a.startsWith("["))
        .sort(),
      v6s.sort(),
    );
    const client = lab.ep("client").probe;
    const before1 = await lab.ep("web1").probe.count("tcp", 8080);
    const before2 = await lab.ep("web2").probe.count("tcp", 8080);
    for (let i = 0; i < 12; i++) assert.equal(await client.tcp(six ?? "", 80, T), "ok", "IPv6 ClusterIP");
    for (let i = 0; i < 4; i++) assert.equal(await client.tcp(four ?? "", 80, T), "ok", "IPv4 ClusterIP");
    const got1 = (await lab.ep("web1").probe.count("tcp", 8080)) - before1;
    const got2 = (await lab.ep("web2").probe.count("tcp", 8080)) - before2;
    assert.equal(got1 + got2, 16);
    assert.ok(got1 > 0 && got2 > 0, `both pods over IPv6 and IPv4: ${got1}/${got2}`);
    const rows = serviceRows(views).map((x) => x.join(" "));
    assert.ok(
      rows.some((x) => x.includes(`web6 ClusterIP ${six},${four}`)),
      rows.join("\n"),
    );
    await lab.agent.lb.delete(dual, "dual.yaml");
  });

  test("a bad file is refused whole with field paths, and nothing changes", async () => {
    const was = JSON.stringify(lab.agent.lb.list());
    const bad = SERVICES.replace(
      "targetPort: 8080}]\n---",
      "targetPort: 8080, protocol: TCPX}]\n---",
    ).replace("nodePort: 30081", "nodePort: 30081, bogus: 1");
    await assert.rejects(
      () => lab.agent.lb.apply(bad, "bad.yaml"),
      (e: unknown) => {
        assert.ok(e instanceof MembraneError);
        assert.equal(e.code, "SERVICE_INVALID");
        const paths = e.issues.map((i) => i.path);
        assert.deepEqual(paths, ["document 1: spec.ports[0].protocol", "document 2: spec.ports[0].bogus"]);
        return true;
      },
    );
    assert.equal(JSON.stringify(lab.agent.lb.list()), was);
    assert.equal(await lab.ep("client").probe.tcp("10.96.0.50", 80, T), "ok");
  });

  test("with the last Service deleted, the LB table and the service chains go", async () => {
    const during = await kernel();
    assert.ok(
      during.tables.includes(`table inet ${lab.options.table as string}_lb`),
      during.tables.join(", "),
    );
    assert.ok(during.chains.includes("lb_pre_c") && during.chains.includes("lb_out_c"));
    await lab.agent.lb.delete(SERVICES, "svc.yaml");
    const k = await kernel();
    assert.ok(!k.tables.some((t) => t.endsWith("_lb")), k.tables.join(", "));
    assert.ok(!k.chains.includes("lb_pre_c") && !k.chains.includes("lb_out_c"), k.chains.join(", "));
    assert.equal(
      await lab.ep("client").probe.tcp(lab.ep("web1").ip, 8080, T),
      "ok",
      "pod to pod still allowed",
    );
  });
});
