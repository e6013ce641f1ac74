/**
 * membrane-cni chained after Debian's `ptp` and `bridge` (needs root), run
 * as a runtime runs them (test/cni/runtime.ts: real plugin processes in the
 * lab's node namespace): the first plugin wires the container, the agent
 * adopts the host veth as an endpoint with the identity from CNI_ARGS, and
 * real packets are allowed and refused by policy. DEL forgets it, twice.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import { CniLab, type FirstPlugin } from "./harness.js";

const skip =
  rootSkipReason() ?? (existsSync("/usr/lib/cni/ptp") ? undefined : "needs containernetworking-plugins");

/** The server (app: server) may reach the client on 80 only: nothing else leaves it. */
const SERVER_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

const containerIp = (r: Record<string, unknown>): string =>
  String((r["ips"] as { address: string }[])[0]?.address).split("/")[0] ?? "";

describe("membrane-cni chained after ptp and bridge (root)", { skip: skip ?? false }, () => {
  for (const first of ["ptp", "bridge"] as FirstPlugin[]) {
    test(`after ${first}: the container becomes an endpoint with the identity of CNI_ARGS, and policy allows the client and refuses the other`, async () => {
      const c = await CniLab.start(first);
      try {
        const lab = c.lab;
        // A host without br_netfilter: bridged frames never meet nftables' inet hooks.
        if (first === "bridge")
          await lab.sh(lab.node, ["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=0"]);
        await lab.endpoint("client", { app: "client" }, { tcp: [80] });
        await lab.endpoint("other", { app: "other" }, { tcp: [80] });
        await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
        await lab.agent.applyPolicies(SERVER_EGRESS, "server-out.yaml");
        const { att, result } = await c.add(
          "web",
          "K8S_POD_NAMESPACE=default;MEMBRANE_LABELS=app:server,tier:front",
        );
        // The result is the first plugin's, passed through (SPEC.md: chained plugins output prevResult).
        assert.equal(result["cniVersion"], "1.0.0");
        const ip = containerIp(result);
        const ep = lab.agent.getEndpoint("default", "web");
        assert.deepEqual(ep.labels, { net: c.rt.p.conflist.name, app: "server", tier: "front" });
        assert.equal(ep.ipv4, ip);
        assert.ok(ep.ingress.enforced, "ingress enforced");
        assert.match(ep.hostIfname, /^veth/);
        const server = lab.probeIn(att.netns.slice("/run/netns/".length));
        await server.listen("tcp", 80);
        assert.equal(await lab.ep("client").probe.tcp(ip, 80, T), "ok", "client -> server allowed");
        assert.equal(await lab.ep("other").probe.tcp(ip, 80, T), "timeout", "other -> server refused");
        // Two more containers of the same network (for bridge: taken off the bridge and routed
        // through the node like ptp's, so the server's ingress decides there too).
        const peer = await c.add("peer", "MEMBRANE_LABELS=app:client");
        const intruder = await c.add("intruder", "MEMBRANE_LABELS=app:other");
        const peerProbe = lab.probeIn(peer.att.netns.slice("/run/netns/".length));
        const intruderProbe = lab.probeIn(intruder.att.netns.slice("/run/netns/".length));
        assert.equal(await peerProbe.tcp(ip, 80, T), "ok", "container client -> server allowed");
        assert.equal(await intruderProbe.tcp(ip, 80, T), "timeout", "container other -> server refused");
        await c.del("peer");
        await c.del("intruder");
        // Routed through the node by its own veth (after bridge too): egress is enforced.
        assert.equal(await server.tcp(lab.ep("client").ip, 80, T), "ok", "server -> client allowed");
        assert.equal(await server.tcp(lab.ep("other").ip, 80, T), "timeout", "server -> other refused");
        await c.del("web");
        assert.throws(() => lab.agent.getEndpoint("default", "web"), /Cannot find endpoint/);
        // DEL again (SPEC.md: DEL is idempotent), with the same prevResult.
        const again = await c.rt.del(att, result);
        assert.deepEqual(
          again.map((r) => [r.status, r.stdout.trim()]),
          [
            [0, ""],
            [0, ""],
          ],
        );
        assert.deepEqual(await lab.agent.datapathDiff(), [], "the kernel holds what the agent wants");
      } finally {
        await c.destroy();
      }
    });
  }

  test("a restarted agent keeps a CNI endpoint as the runtime wired it: no namespace or veth of its own, policy still enforced", async () => {
    const c = await CniLab.start("ptp", "10.89.4.0/24");
    try {
      const lab = c.lab;
      await lab.endpoint("client", { app: "client" });
      await lab.endpoint("other", { app: "other" });
      await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      const { att, result } = await c.add("web", "MEMBRANE_LABELS=app:server");
      const ip = containerIp(result);
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
      const ep = lab.agent.getEndpoint("default", "web");
      assert.equal(ep.ipv4, ip);
      assert.ok(
        !lab.logs
          .slice(from)
          .some((l) => ["endpoint could not be created", "endpoint repaired"].includes(String(l["msg"]))),
        "nothing created or repaired for it",
      );
      assert.equal(await lab.ep("client").probe.tcp(ip, 80, T), "ok");
      assert.equal(await lab.ep("other").probe.tcp(ip, 80, T), "timeout");
      // The container's addresses and routes are the runtime's, untouched.
      const routes = await lab.sh(att.netns.slice("/run/netns/".length), ["ip", "-4", "route"]);
      assert.doesNotMatch(routes, /10\.210\.0\.1/, routes);
      // `membrane endpoint delete` refuses: the runtime removes it (CNI DEL).
      await assert.rejects(lab.agent.deleteEndpointRequest("default", "web"), /remove its container/);
    } finally {
      await c.destroy();
    }
  });
});
