/**
 * How a new endpoint is wired (needs root): no process spawned from Node
 * (the namespace and its `ip -batch` through the long-lived helper shell,
 * netns-helper.ts), the veth and the node side over rtnetlink; every step's result read back from the kernel
 * on both sides; a step that fails names itself and its namespace and
 * leaves nothing behind.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { createEndpoint, createNode, exec, type EndpointParams } from "../../src/datapath/endpoint.js";
import { run } from "../../src/datapath/exec.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { linkStates } from "../../src/datapath/rtnl.js";
import { addrBytes } from "../../src/datapath/rtnl-ops.js";
import { rootSkipReason } from "./harness.js";
import { spawned } from "./spawn-spy.js";

const skip = rootSkipReason();
const prefixOf = (tag: string): string => `mh4${randomBytes(2).toString("hex")}${tag}`;

/** `ip -j` output of `args` in `netns`. */
async function ipj(netns: string, args: string[]): Promise<unknown[]> {
  return JSON.parse(await run(["ip", "-n", netns, "-j", ...args])) as unknown[];
}

async function sysctl(netns: string, key: string): Promise<string> {
  return (await run(["nsenter", `--net=/run/netns/${netns}`, "cat", `/proc/sys/${key}`])).trim();
}

async function params(prefix: string): Promise<EndpointParams> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.204.0.1",
    gateway6: "fd00:204::1",
    podCidr4: "10.204.0.0/24",
  });
  return {
    node,
    name: "a",
    netns: `${prefix}-ep-a`,
    hostIfname: `${prefix}h1`,
    ipv4: "10.204.0.11",
    ipv6: "fd00:204::b",
  };
}

describe("endpoint wiring (root)", { skip: skip ?? false }, () => {
  test("a new endpoint spawns no process from Node (the helper shell does), and both sides hold every address, route and sysctl", async () => {
    const prefix = prefixOf("w");
    try {
      const p = await params(prefix); // createNode starts the helper shell (netns-helper.ts)
      const argv = await spawned(() => createEndpoint(p));
      assert.deepEqual(argv, [], `no process spawned from Node, not: ${JSON.stringify(argv)}`);

      // Endpoint side: lo and eth0 up, its addresses, its routes, its sysctls (eth0's from `default`).
      const links = (await ipj(p.netns, ["addr", "show"])) as {
        ifname: string;
        flags: string[];
        addr_info: { local: string; prefixlen: number }[];
      }[];
      const lo = links.find((l) => l.ifname === "lo");
      const eth0 = links.find((l) => l.ifname === "eth0");
      assert.ok(lo?.flags.includes("UP"), "lo up");
      assert.ok(eth0?.flags.includes("UP"), "eth0 up");
      const ours = (eth0?.addr_info ?? [])
        .map((a) => `${a.local}/${a.prefixlen}`)
        .filter((a) => !a.startsWith("fe80"));
      assert.deepEqual(ours.sort(), ["10.204.0.11/32", "fd00:204::b/128"]);
      const r4 = (await ipj(p.netns, ["route", "show"])) as { dst: string; gateway?: string; dev: string }[];
      assert.deepEqual(r4.map((r) => `${r.dst}${r.gateway ? ` via ${r.gateway}` : ""} dev ${r.dev}`).sort(), [
        "10.204.0.1 dev eth0",
        "default via 10.204.0.1 dev eth0",
      ]);
      const r6 = (await ipj(p.netns, ["-6", "route", "show", "default"])) as {
        gateway?: string;
        dev: string;
      }[];
      assert.deepEqual(
        r6.map((r) => `${r.gateway} ${r.dev}`),
        ["fe80::1 eth0"],
      );
      for (const dev of ["all", "default", "eth0"]) {
        assert.equal(await sysctl(p.netns, `net/ipv6/conf/${dev}/accept_dad`), "0", `${dev} accept_dad`);
        assert.equal(await sysctl(p.netns, `net/ipv4/conf/${dev}/rp_filter`), "0", `${dev} rp_filter`);
      }

      // Node side: the host end up with fe80::1/64, one route per endpoint address through it.
      const node = p.node.netns as string;
      const host = (await ipj(node, ["addr", "show", "dev", p.hostIfname])) as {
        flags: string[];
        addr_info: { local: string; prefixlen: number }[];
      }[];
      assert.ok(host[0]?.flags.includes("UP"), "host end up");
      assert.ok(
        (host[0]?.addr_info ?? []).some((a) => a.local === "fe80::1" && a.prefixlen === 64),
        "fe80::1/64",
      );
      const hr = [
        ...((await ipj(node, ["route", "show", "dev", p.hostIfname])) as { dst: string }[]),
        ...((await ipj(node, ["-6", "route", "show", "dev", p.hostIfname])) as { dst: string }[]),
      ].map((r) => r.dst);
      assert.ok(
        hr.includes("10.204.0.11") && hr.includes("fd00:204::b"),
        `routes to the endpoint: ${hr.join(", ")}`,
      );

      // And it works end to end, both families.
      assert.equal((await exec(p, ["ping", "-c1", "-W1", "10.204.0.1"])).status, 0);
      assert.equal((await exec(p, ["ping", "-c1", "-W1", "fd00:204::1"])).status, 0);
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a node side the kernel refuses fails naming the step and the node namespace, and leaves neither namespace nor veth behind", async () => {
    const prefix = prefixOf("f");
    try {
      const p = await params(prefix);
      const node = p.node.netns as string;
      // IPv6 off in the node: the host end cannot take fe80::1.
      await run([
        "nsenter",
        `--net=/run/netns/${node}`,
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 && echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6",
      ]);
      await assert.rejects(createEndpoint(p), (e: Error & { code?: string }) => {
        assert.equal(e.code, "NETNS_FAILED");
        assert.match(e.message, new RegExp(`configure ${p.hostIfname} for endpoint a \\(netns ${node}\\)`));
        assert.match(e.message, /fe80::1\/64/);
        return true;
      });
      assert.ok(!(await listNetns()).includes(p.netns), "the new namespace is gone");
      // The host end goes with the namespace, asynchronously (the safety net is not a measure).
      for (let i = 0; i < 100 && (await linkStates(node)).has(p.hostIfname); i++) await sleep(50);
      assert.ok(!(await linkStates(node)).has(p.hostIfname), "the host end is gone");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });
});

describe("rtnetlink address bytes", () => {
  for (const [addr, hex] of [
    ["10.204.0.11", "0acc000b"],
    ["fd00:204::b", "fd00020400000000000000000000000b"],
    ["::", "0".repeat(32)],
    ["::1", "0".repeat(31) + "1"],
    ["fe80::1", "fe80" + "0".repeat(27) + "1"],
    ["1:2:3:4:5:6:7:8", "00010002000300040005000600070008"],
    ["::ffff:10.0.0.1", "0".repeat(20) + "ffff0a000001"],
  ] as const) {
    test(`${addr} is ${hex} (as inet_pton)`, () => {
      assert.equal(addrBytes(addr).toString("hex"), hex);
    });
  }
  test("what is not an address is refused", () => {
    assert.throws(() => addrBytes("10.0.0.256"), /not an address/);
  });
});
