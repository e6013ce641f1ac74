/**
 * An endpoint chained after `bridge` (needs root): the agent takes its veth
 * off the bridge and routes it (src/datapath/cni-bridge.ts), so its packets
 * reach the node from its own veth and the endpoint's dispatch decides both
 * ways, with real packets: container-to-container on the same bridge and
 * container-to-outside, allowed and denied, egress and ingress (the node's own
 * connections included), with the machine's default br_netfilter setting
 * (bridge-nf-call-iptables=1 in a new namespace). An endpoint adopted by an
 * older agent (still a port, no `routed`) does not claim egress.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { describe, test } from "node:test";
import { endpointRows } from "../../src/cli/commands/endpoint.js";
import { egressView } from "../../src/agent/controllers/endpoint-record.js";
import type { EndpointRecordV1 } from "../../src/agent/records.js";
import { rootSkipReason, SERVER_FROM_CLIENT, T } from "../agent/e2e/harness.js";
import { CniLab } from "./harness.js";

const skip =
  rootSkipReason() ?? (existsSync("/usr/lib/cni/bridge") ? undefined : "needs containernetworking-plugins");

/** The server may reach clients on 80 and one outside address on 80: nothing else leaves it. */
const SERVER_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-out, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  egress:
  - toEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - toCIDR: [198.51.100.7/32]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

/** The node may not reach the server (allowLocalhost would let it): shows that the node's own packets meet its ingress. */
const SERVER_NOT_FROM_HOST = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-not-host, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingressDeny:
  - fromEntities: [host]
`;

const ipOf = (r: Record<string, unknown>): string =>
  String((r["ips"] as { address: string }[])[0]?.address).split("/")[0] ?? "";

describe("membrane-cni after bridge: egress and ingress enforced (root)", { skip: skip ?? false }, () => {
  test("after bridge, policy decides container-to-container on the same bridge and container-to-outside, both ways, with real packets; the view and the CLI say enforced", async () => {
    const c = await CniLab.start("bridge", "10.89.8.0/24");
    try {
      const lab = c.lab;
      const nf = await lab.sh(lab.node, ["sysctl", "-n", "net.bridge.bridge-nf-call-iptables"]);
      assert.equal(nf.trim(), "1", "br_netfilter's default in a new namespace");
      const outside = lab.probeIn(await lab.outsideNamespace(["198.51.100.7/32", "198.51.100.8/32"]));
      await outside.listen("tcp", 80);
      await lab.agent.applyPolicies(SERVER_EGRESS, "server-out.yaml");
      await lab.agent.applyPolicies(SERVER_FROM_CLIENT, "server.yaml");
      await lab.agent.applyPolicies(SERVER_NOT_FROM_HOST, "server-not-host.yaml");
      const web = await c.add("web", "MEMBRANE_LABELS=app:server");
      const peer = await c.add("peer", "MEMBRANE_LABELS=app:client");
      const intruder = await c.add("intruder", "MEMBRANE_LABELS=app:other");
      const [webIp, peerIp, intruderIp] = [ipOf(web.result), ipOf(peer.result), ipOf(intruder.result)];
      const probe = (a: { att: { netns: string } }) => lab.probeIn(a.att.netns.slice("/run/netns/".length));
      const [server, client, other] = [probe(web), probe(peer), probe(intruder)];
      for (const p of [server, client, other]) await p.listen("tcp", 80);

      const got = {
        // egress of the server (container-to-container on the bridge, then outside)
        "server -> client container :80": await server.tcp(peerIp, 80, T),
        "server -> other container :80": await server.tcp(intruderIp, 80, T),
        "server -> 198.51.100.7:80": await server.tcp("198.51.100.7", 80, T),
        "server -> 198.51.100.8:80": await server.tcp("198.51.100.8", 80, T),
        // ingress of the server
        "client container -> server": await client.tcp(webIp, 80, T),
        "other container -> server": await other.tcp(webIp, 80, T),
        "node -> server": await lab.probeIn(lab.node).tcp(webIp, 80, T),
        "outside -> server": await outside.tcp(webIp, 80, T),
        // no policy selects the others: open both ways
        "other container -> client container": await other.tcp(peerIp, 80, T),
        "client container -> 198.51.100.8:80": await client.tcp("198.51.100.8", 80, T),
      };
      assert.deepEqual(got, {
        "server -> client container :80": "ok",
        "server -> other container :80": "timeout",
        "server -> 198.51.100.7:80": "ok",
        "server -> 198.51.100.8:80": "timeout",
        "client container -> server": "ok",
        "other container -> server": "timeout",
        "node -> server": "timeout",
        "outside -> server": "timeout",
        "other container -> client container": "ok",
        "client container -> 198.51.100.8:80": "ok",
      });
      const ep = lab.agent.getEndpoint("default", "web");
      assert.deepEqual([ep.egress.enforced, ep.egress.unenforced], [true, undefined]);
      assert.match(endpointRows([ep])[1]?.[7] ?? "", /^enforced \(\d+\)$/);
      const link = JSON.parse(
        await lab.sh(lab.node, ["ip", "-j", "-d", "link", "show", "dev", ep.hostIfname]),
      ) as { master?: string }[];
      assert.equal(link[0]?.master, undefined, "the veth is off the bridge");

      assert.deepEqual(await lab.agent.datapathDiff(), [], "the kernel holds what the agent wants");
      // DEL through the chain (membrane-cni, then bridge) leaves no endpoint and no veth.
      await c.del("web");
      assert.throws(() => lab.agent.getEndpoint("default", "web"), /Cannot find endpoint/);
      assert.equal(
        (await lab.sh(lab.node, ["ip", "-o", "link", "show", "dev", ep.hostIfname]).catch(() => "")).trim(),
        "",
      );
    } finally {
      await c.destroy();
    }
  });
});

test("an endpoint adopted behind a bridge by an older agent (a port still, no `routed`) does not claim egress; a routed one does", () => {
  const rec = (cni: EndpointRecordV1["cni"]): EndpointRecordV1 => ({
    v: 1,
    name: "web",
    namespace: "default",
    labels: {},
    id: 3,
    netns: "",
    hostIfname: "veth1",
    ipv4: "10.89.0.5",
    ...(cni ? { cni } : {}),
  });
  const base = { containerId: "c1", ifname: "eth0", network: "n" };
  const legacy = egressView(rec({ ...base, bridge: "br0" }), true, 4);
  assert.equal(legacy.enforced, false);
  assert.match(legacy.unenforced ?? "", /chained after bridge br0: .*not enforced/);
  assert.deepEqual(egressView(rec({ ...base, bridge: "br0", routed: true }), true, 4), {
    enforced: true,
    entries: 4,
  });
  assert.deepEqual(egressView(rec(base), true, 4), { enforced: true, entries: 4 });
});
