/**
 * A Gateway's own address through an agent in cluster mode (root, etcd): the agent reaches etcd
 * through a relay the test cuts, as a network partition of that node. Cut off for longer than
 * its reservations' lease allows, the node takes the address off its gateway namespace (and the
 * Gateway says AddressNotAssigned) before etcd can give it to another node; when etcd answers
 * again, the Gateway is served on an address of the pool again (gateway-addresses.ts). Under the
 * least-privilege roles the Gateway gets its address (under the node's own key), the node's record
 * says its service ranges, and the node refuses a Service with the command that applies it as the
 * cluster's admin; applied so, it gets the next address of those ranges and the node takes it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { adminOnly } from "../../src/agent/api/lb-routes.js";
import { applyLbToCluster } from "../../src/cli/commands/apply-lb-cluster.js";
import { parseLbResources } from "../../src/lb/parse.js";
import { MembraneError } from "../../src/errors.js";
import { skipWithoutEtcd, startEtcd } from "../../src/lab/etcd.js";
import { AgentLab, rootSkipReason } from "../agent/e2e/harness.js";
import { nodeAuth, startAuthEtcd } from "../support/etcd-auth.js";
import { tcpRelay } from "../support/tcp-relay.js";
import { until } from "../support/until.js";
import { CLASS, gatewayYaml } from "./fixtures.js";

const skip = rootSkipReason() ?? skipWithoutEtcd();
const POOL = "198.18.9.0/30"; // one address to give: .2
const POOL8 = "198.18.9.0/29"; // .2 to .6
const GATEWAY =
  CLASS + gatewayYaml("web", ["{name: http, port: 80, protocol: HTTP}"], { namespace: "default" });

/** The IPv4 addresses on a namespace's interfaces. */
function addresses(netns: string): string[] {
  const r = spawnSync("ip", ["-n", netns, "-j", "-4", "addr", "show"], { encoding: "utf8" });
  if (r.status !== 0) return [];
  const links = JSON.parse(r.stdout) as { addr_info?: { local?: string }[] }[];
  return links.flatMap((l) => (l.addr_info ?? []).map((a) => a.local ?? ""));
}

test(
  "cut off from etcd, the node takes its Gateway's address off before etcd can give it away; served again after",
  { skip },
  async () => {
    const etcd = await startEtcd();
    const relay = await tcpRelay(etcd.endpoint);
    let lab: AgentLab | undefined;
    try {
      lab = await AgentLab.prepare("m17gc", {
        podCidr4: "10.212.0.0/24",
        gateway: { addressLeaseTtlSeconds: 6 },
        lb: { serviceCidr: "10.96.0.0/16", loadBalancerPool: POOL, nodePortRange: [30000, 32767] },
        cluster: {
          endpoints: [relay.endpoint],
          node: "m17-n1",
          nodeIp: {},
          labels: {},
          podCidrs: { configured: { ipv4: "10.212.0.0/24" } },
          leaseTtlSeconds: 4,
          tunnel: "native",
          prefix: "m17-gwc/",
        },
      });
      await lab.startAgent();
      const agent = lab.agent;
      const gwns = `${lab.prefix}-gateway`;
      const status = (): string => {
        const r = agent.gateways?.list(["Gateway"]).find((x) => x.name === "web");
        const st = r?.status as { addresses?: { value: string }[]; conditions?: { type: string; status: string; reason: string }[] }; // prettier-ignore
        const p = st?.conditions?.find((c) => c.type === "Programmed");
        return `${(st?.addresses ?? []).map((a) => a.value).join(",")} ${p?.status}/${p?.reason}`;
      };
      await agent.gateways?.apply(GATEWAY, "web.yaml");
      assert.equal(status(), "198.18.9.2 True/Programmed");
      assert.ok(addresses(gwns).includes("198.18.9.2"), addresses(gwns).join(","));

      relay.cut();
      await until("the address leaves the gateway namespace", () => !addresses(gwns).includes("198.18.9.2"), {
        detail: () => `${addresses(gwns).join(",")}; ${status()}`,
      });
      assert.match(status(), / False\/AddressNotAssigned$/);

      relay.heal();
      await until("served again once etcd answers", () => addresses(gwns).includes("198.18.9.2"), {
        ms: 60_000,
        detail: () => `${addresses(gwns).join(",")}; ${status()}`,
      });
      assert.equal(status(), "198.18.9.2 True/Programmed");
    } finally {
      await lab?.destroy();
      await relay.close();
      await etcd.stop();
    }
  },
);

test(
  "least privilege (etcd auth on, the roles of etcd-setup): the Gateway is served on a pool address held under the node's own key; a Service through the node is refused with the admin's command, and as the admin gets the next address, which the node takes",
  { skip },
  async () => {
    const ae = await startAuthEtcd({ nodes: ["e18-n2"], prefix: "e18-gwlp/" });
    const etcd = ae.etcd;
    let lab: AgentLab | undefined;
    try {
      lab = await AgentLab.prepare("e18gp", {
        podCidr4: "10.213.0.0/24",
        gateway: true,
        lb: { serviceCidr: "10.96.0.0/16", loadBalancerPool: POOL8, nodePortRange: [30000, 32767] },
        cluster: {
          endpoints: [etcd.endpoint],
          node: "e18-n2",
          nodeIp: {},
          labels: {},
          auth: nodeAuth("e18-n2"),
          podCidrs: { configured: { ipv4: "10.213.0.0/24" } },
          leaseTtlSeconds: 4,
          tunnel: "native",
          prefix: "e18-gwlp/",
        },
      });
      await lab.startAgent();
      const agent = lab.agent;
      await agent.gateways?.apply(GATEWAY, "web.yaml");
      const r = agent.gateways?.list(["Gateway"]).find((x) => x.name === "web");
      const st = r?.status as { addresses?: { value: string }[]; conditions?: { type: string; status: string; reason: string }[] }; // prettier-ignore
      const p = st?.conditions?.find((c) => c.type === "Programmed");
      assert.equal(
        `${st?.addresses?.map((a) => a.value).join(",")} ${p?.status}/${p?.reason}`,
        "198.18.9.2 True/Programmed",
      );
      assert.ok(addresses(`${lab.prefix}-gateway`).includes("198.18.9.2"));
      const kv = ae.node("e18-n2");
      assert.match((await kv.get("cluster/lb/gateways/e18-n2/198.18.9.2"))?.value ?? "", /^gateway e18-n2 /);
      const rec = JSON.parse((await kv.get("cluster/nodes/e18-n2"))?.value ?? "{}") as { lb?: { loadBalancerPool?: string } }; // prettier-ignore
      assert.equal(rec.lb?.loadBalancerPool, POOL8, "the node publishes the ranges it allocates from");
      const rev = await kv.revision();
      const svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80}]\n"; // prettier-ignore
      const err = await adminOnly(agent.lb.apply(svc, "svc.yaml")).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof MembraneError, `refused, not ${String(err)}`);
      assert.match(err.message, /lets no node write them.*nothing was changed/);
      assert.match(err.hint ?? "", /membrane apply -f FILE --cluster-store \S+ --etcd-username membrane-admin --etcd-password-file/); // prettier-ignore
      assert.equal(await kv.revision(), rev, "nothing written");
      // As the admin (membrane apply --cluster-store), from the ranges the node publishes: the
      // Gateway's address skipped; the node, reading with its own role, takes the Service.
      await applyLbToCluster(ae.admin(), parseLbResources(svc, "svc.yaml"), "apply", {});
      await until(
        "the node takes the admin's Service",
        () => agent.lb.list().some((v) => v.name === "web" && v.externalIP === "198.18.9.3"),
        {
          detail: () => JSON.stringify(agent.lb.list()),
        },
      );
    } finally {
      await lab?.destroy();
      await ae.stop();
    }
  },
);
