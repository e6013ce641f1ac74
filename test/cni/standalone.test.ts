/**
 * membrane-cni standalone (needs root): the only plugin of the list, run as a
 * runtime runs it (test/cni/runtime.ts: the compiled binary in the lab's node
 * namespace, a namespace the test makes with `ip netns add` as a runtime
 * would). The agent makes the veth into that namespace named CNI_IFNAME, an
 * address from its IPAM and the routes; real packets are allowed and refused
 * by policy, both ways; DEL leaves nothing; a failed ADD leaves nothing.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { parseConf } from "../../src/cni/spec.js";
import { rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import type { Ipam } from "../../src/agent/ipam.js";
import { CniLab } from "./harness.js";

const skip = rootSkipReason();

const SERVER_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

type Result = {
  cniVersion: string;
  interfaces: { name: string; mac?: string; sandbox?: string }[];
  ips: { address: string; gateway?: string; interface?: number }[];
  routes: { dst: string; gw?: string }[];
};

async function nodeLinks(c: CniLab): Promise<string[]> {
  const out = await c.lab.ip(["-n", c.lab.node, "-j", "link", "show", "type", "veth"]);
  return (JSON.parse(out) as { ifname: string }[]).map((l) => l.ifname).filter((n) => n.startsWith("mbc"));
}

const ipamOwners = async (c: CniLab): Promise<string[]> =>
  ((await (Reflect.get(c.lab.agent, "ipam") as Ipam).list()) as { owner: string }[]).map((a) => a.owner);

const code = (stdout: string): number => (JSON.parse(stdout) as { code: number }).code;

test("examples/cni/membrane-standalone.conflist: membrane-cni alone, a configuration the plugin accepts", () => {
  const path = fileURLToPath(new URL("../../../examples/cni/membrane-standalone.conflist", import.meta.url));
  const l = JSON.parse(readFileSync(path, "utf8")) as { cniVersion: string; name: string; plugins: object[] };
  assert.equal(l.plugins.length, 1);
  const conf = parseConf(JSON.stringify({ ...l.plugins[0], cniVersion: l.cniVersion, name: l.name }));
  assert.equal(conf.prevResult, undefined);
  assert.equal(conf.socket, "/run/membrane/agent.sock");
});

describe("membrane-cni standalone: the agent wires the container (root)", { skip: skip ?? false }, () => {
  test("standalone ADD makes eth0 in the runtime's namespace with an IPAM address and routes, policy allows and refuses both ways, DEL leaves nothing", async () => {
    const c = await CniLab.start("standalone");
    try {
      const lab = c.lab;
      await lab.endpoint("client", { app: "client" }, { tcp: [80] });
      await lab.endpoint("other", { app: "other" }, { tcp: [80] });
      await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      await lab.agent.applyPolicies(SERVER_EGRESS, "server-out.yaml");
      const { att, result } = await c.add("web", "K8S_POD_NAMESPACE=default;MEMBRANE_LABELS=app:server");
      const r = result as unknown as Result;
      const ns = att.netns.slice("/run/netns/".length);
      // The spec result: the host end, the container end in its sandbox, the address on it, the default route.
      assert.equal(r.cniVersion, "1.0.0");
      assert.equal(r.interfaces.length, 2);
      assert.match(r.interfaces[0]?.name ?? "", /^mbc\d+$/);
      assert.equal(r.interfaces[0]?.sandbox, undefined);
      assert.equal(r.interfaces[1]?.name, "eth0");
      assert.equal(r.interfaces[1]?.sandbox, att.netns);
      const link = (
        JSON.parse(await lab.sh(ns, ["ip", "-j", "link", "show", "dev", "eth0"])) as {
          address: string;
        }[]
      )[0];
      assert.equal(r.interfaces[1]?.mac, link?.address);
      assert.equal(r.ips.length, 1);
      assert.equal(r.ips[0]?.interface, 1);
      assert.equal(r.ips[0]?.gateway, "10.210.0.1");
      assert.match(r.ips[0]?.address ?? "", /^10\.210\.0\.\d+\/32$/);
      assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0", gw: "10.210.0.1" }]);
      const ip = (r.ips[0]?.address ?? "").split("/")[0] ?? "";
      // The kernel holds what the result says.
      assert.match(
        await lab.sh(ns, ["ip", "-4", "addr", "show", "dev", "eth0"]),
        new RegExp(`inet ${ip}/32`),
      );
      assert.match(await lab.sh(ns, ["ip", "-4", "route"]), /default via 10\.210\.0\.1 dev eth0/);
      const ep = lab.agent.getEndpoint("default", "web");
      assert.equal(ep.ipv4, ip);
      assert.equal(ep.hostIfname, r.interfaces[0]?.name);
      assert.deepEqual(ep.labels, { net: c.rt.p.conflist.name, app: "server" });
      assert.ok(ep.ingress.enforced && ep.egress.enforced);
      // Real packets: ingress by the server's policy, egress by its own veth.
      const server = lab.probeIn(ns);
      await server.listen("tcp", 80);
      assert.equal(await lab.ep("client").probe.tcp(ip, 80, T), "ok", "client -> server allowed");
      assert.equal(await lab.ep("other").probe.tcp(ip, 80, T), "timeout", "other -> server refused");
      assert.equal(await server.tcp(lab.ep("client").ip, 80, T), "ok", "server -> client allowed");
      assert.equal(await server.tcp(lab.ep("other").ip, 80, T), "timeout", "server -> other refused");
      assert.deepEqual(await lab.agent.datapathDiff(), [], "the kernel holds what the agent wants");
      // CHECK with the ADD's result.
      const check = await c.rt.one("CHECK", "membrane-cni", att, { prevResult: result });
      assert.equal(check.status, 0, check.stdout);
      assert.ok((await ipamOwners(c)).includes("default/web"));
      await c.del("web");
      assert.throws(() => lab.agent.getEndpoint("default", "web"), /Cannot find endpoint/);
      assert.deepEqual(await nodeLinks(c), [], "no veth left in the node");
      assert.doesNotMatch(await lab.sh(ns, ["ip", "link"]), /eth0/, "no eth0 left in the namespace");
      assert.ok(!(await ipamOwners(c)).includes("default/web"), "the address is free");
      // DEL again: idempotent.
      const again = await c.rt.del(att, result);
      assert.deepEqual(
        again.map((x) => [x.status, x.stdout.trim()]),
        [[0, ""]],
      );
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      await c.destroy();
    }
  });

  test("a standalone ADD that fails (CNI_IFNAME taken in the namespace, or no namespace) leaves no veth, no address, no endpoint", async () => {
    const c = await CniLab.start("standalone", "10.89.7.0/24");
    try {
      const lab = c.lab;
      const att = { ...(await c.sandbox("taken")), args: "IgnoreUnknown=1;K8S_POD_NAME=taken" };
      const ns = att.netns.slice("/run/netns/".length);
      await lab.ip(["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer"]);
      const r = await c.rt.add(att);
      assert.equal(r.ok, false);
      assert.equal(code(r.failed?.stdout ?? "{}"), 100, r.failed?.stdout);
      assert.match(r.failed?.stdout ?? "", /EEXIST/);
      const none = { containerId: `${c.prefix}none`, netns: `/run/netns/${c.prefix}-none`, ifname: "eth0" };
      const r2 = await c.rt.add({ ...none, args: "IgnoreUnknown=1;K8S_POD_NAME=none" });
      assert.equal(r2.ok, false);
      assert.equal(code(r2.failed?.stdout ?? "{}"), 100, r2.failed?.stdout);
      assert.match(r2.failed?.stdout ?? "", /not a network namespace file/);
      assert.deepEqual(lab.agent.listEndpoints(), []);
      assert.deepEqual(await nodeLinks(c), [], "no veth left in the node");
      assert.deepEqual(await ipamOwners(c), [], "no address held");
      assert.match(
        await lab.sh(ns, ["ip", "-j", "-d", "link", "show", "dev", "eth0"]),
        /"veth"/,
        "the runtime's eth0 untouched",
      );
      assert.deepEqual(await lab.agent.datapathDiff(), []);
      // The runtime's DEL after a failed ADD succeeds (nothing to do).
      assert.deepEqual(
        (await c.rt.del(att, undefined)).map((x) => x.status),
        [0],
      );
    } finally {
      await c.destroy();
    }
  });
  test("a restarted agent keeps a standalone endpoint as wired (nothing re-created), still enforced; GC of the network then deletes its veth and frees its address", async () => {
    const c = await CniLab.start("standalone", "10.89.9.0/24");
    try {
      const lab = c.lab;
      await lab.endpoint("client", { app: "client" });
      await lab.endpoint("other", { app: "other" });
      await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      const { att, result } = await c.add("web", "MEMBRANE_LABELS=app:server");
      const ip = ((result as unknown as Result).ips[0]?.address ?? "").split("/")[0] ?? "";
      const server = lab.probeIn(att.netns.slice("/run/netns/".length));
      await server.listen("tcp", 80);
      await lab.stopAgent();
      const from = lab.logs.length;
      await lab.startAgent();
      for (
        let i = 0;
        i < 600 && !lab.logs.slice(from).some((l) => l["msg"] === "adopted endpoints verified");
        i++
      )
        await new Promise((r) => setTimeout(r, 50));
      assert.equal(lab.agent.getEndpoint("default", "web").ipv4, ip);
      assert.equal(await lab.ep("client").probe.tcp(ip, 80, T), "ok");
      assert.equal(await lab.ep("other").probe.tcp(ip, 80, T), "timeout");
      // GC: the runtime knows no attachment of this network any more.
      const gc = await c.rt.one("GC", "membrane-cni", att, { "cni.dev/valid-attachments": [] });
      assert.equal(gc.status, 0, gc.stdout);
      assert.throws(() => lab.agent.getEndpoint("default", "web"), /Cannot find endpoint/);
      assert.deepEqual(await nodeLinks(c), [], "no veth left in the node");
      assert.ok(!(await ipamOwners(c)).includes("default/web"), "the address is free");
      assert.deepEqual(await lab.agent.datapathDiff(), []);
    } finally {
      await c.destroy();
    }
  });
});
