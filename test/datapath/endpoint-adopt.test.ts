/**
 * Endpoint adoption and the rtnetlink paths (needs root): an endpoint that is
 * already as wanted costs zero kernel operations (watched with `ip monitor`
 * in both namespaces), a broken one is repaired, and refusals name the step
 * and the interface.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import {
  createEndpoint,
  createNode,
  exec,
  reconcileEndpoint,
  type EndpointParams,
} from "../../src/datapath/endpoint.js";
import { ip } from "../../src/datapath/exec.js";
import { cleanupPrefix, createNetns, listNetns } from "../../src/datapath/netns.js";
import { createVethIn } from "../../src/datapath/rtnl.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

/** Everything `ip monitor` reports in `netns` while `fn` runs. */
async function monitored(netnses: readonly string[], fn: () => Promise<unknown>): Promise<string> {
  const children = netnses.map((ns) => spawn("ip", ["-n", ns, "monitor", "link", "address", "route"]));
  const out: string[] = [];
  for (const c of children) c.stdout.on("data", (b: Buffer) => out.push(b.toString()));
  try {
    await sleep(300); // let the monitors subscribe (setup, not an assertion)
    await fn();
    await sleep(300); // let late notifications arrive
  } finally {
    for (const c of children) c.kill();
  }
  return out.join("");
}

/**
 * Waits until both ends of the endpoint's veth report their carrier (operstate UP): the kernel
 * sends that notification up to a second after the link came up (linkwatch), and a create that
 * fast would otherwise see it inside the next watched window. Setup, not an assertion.
 */
async function carrierSettled(p: EndpointParams): Promise<void> {
  const up = async (ns: string, dev: string): Promise<boolean> => {
    const out = await ip(["-j", "link", "show", "dev", dev], ns).catch(() => "[]");
    return (JSON.parse(out || "[]") as { operstate?: string }[])[0]?.operstate === "UP";
  };
  for (let i = 0; i < 100; i++) {
    if ((await up(p.netns, "eth0")) && (await up(p.node.netns as string, p.hostIfname))) return;
    await sleep(50);
  }
}

async function endpointParams(prefix: string): Promise<EndpointParams> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.201.0.1",
    gateway6: "fd00:201::1",
    podCidr4: "10.201.0.0/24",
  });
  return {
    node,
    name: "a",
    netns: `${prefix}-ep-a`,
    hostIfname: `${prefix}h1`,
    ipv4: "10.201.0.11",
    ipv6: "fd00:201::b",
  };
}

describe("endpoint adoption and rtnetlink (root)", { skip: skip ?? false }, () => {
  test("an endpoint whose namespace, veth, addresses and routes exist is adopted with zero kernel operations", async () => {
    const prefix = uniquePrefix("rn");
    try {
      const params = await endpointParams(prefix);
      await createEndpoint(params);
      await carrierSettled(params);
      const events = await monitored([params.netns, `${prefix}-node`], () => createEndpoint(params));
      assert.equal(events, "", "a second create changes nothing in either namespace");
      const again = await reconcileEndpoint(params);
      assert.deepEqual(again.changes, [], "and reports that it changed nothing");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("an endpoint whose veth is missing is repaired (the namespace is kept), and only what was missing is applied", async () => {
    const prefix = uniquePrefix("rn");
    try {
      const params = await endpointParams(prefix);
      const ep = await createEndpoint(params);
      await ip(["link", "del", params.hostIfname], `${prefix}-node`); // takes eth0 along
      const r = await reconcileEndpoint(params);
      assert.ok(!r.changes.some((c) => c.startsWith("create netns")), r.changes.join("\n"));
      assert.ok(
        r.changes.includes(`create veth ${params.hostIfname} <-> eth0 (rtnetlink)`),
        r.changes.join("\n"),
      );
      assert.ok(!r.changes.some((c) => c.endsWith("link set lo up")), "lo was up already");
      assert.equal((await exec(ep, ["ping", "-c1", "-W1", "10.201.0.1"])).status, 0);
      assert.equal((await exec(ep, ["ping", "-c1", "-W1", "fd00:201::1"])).status, 0);
      assert.deepEqual((await reconcileEndpoint(params)).changes, [], "repaired = as wanted");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a new endpoint whose node-side interface name is taken by a leftover replaces the leftover", async () => {
    const prefix = uniquePrefix("rn");
    try {
      const params = await endpointParams(prefix);
      await ip(
        ["link", "add", params.hostIfname, "type", "veth", "peer", "name", `${prefix}y`],
        `${prefix}-node`,
      );
      const r = await reconcileEndpoint(params);
      assert.ok(r.changes.includes(`delete ${params.hostIfname} in ${prefix}-node`), r.changes.join("\n"));
      assert.equal((await exec(r.endpoint, ["ping", "-c1", "-W1", "10.201.0.1"])).status, 0);
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a veth the kernel refuses (name taken) fails with NETNS_FAILED naming the step, the interface and the errno", async () => {
    const prefix = uniquePrefix("rn");
    try {
      await createNetns(`${prefix}-a`);
      await createNetns(`${prefix}-b`);
      await ip(["link", "add", `${prefix}x`, "type", "veth", "peer", "name", `${prefix}y`], `${prefix}-a`);
      await assert.rejects(
        createVethIn(
          { ifname: `${prefix}x`, netns: `${prefix}-a` },
          { ifname: "eth0", netns: `${prefix}-b` },
        ),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "NETNS_FAILED");
          assert.match(
            e.message,
            new RegExp(`^Cannot create veth ${prefix}x \\(netns ${prefix}-a\\) <-> eth0`),
          );
          assert.match(e.message, /EEXIST/);
          return true;
        },
      );
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("a node namespace that does not exist fails with NETNS_FAILED naming the veth and the namespace", async () => {
    const prefix = uniquePrefix("rn");
    try {
      await assert.rejects(
        createEndpoint({
          node: { netns: `${prefix}-gone` },
          name: "a",
          netns: `${prefix}-ep-a`,
          hostIfname: `${prefix}h1`,
          ipv4: "10.201.0.12",
        }),
        (e: Error & { code?: string }) => {
          assert.equal(e.code, "NETNS_FAILED");
          assert.match(e.message, new RegExp(`${prefix}h1`));
          assert.match(e.message, new RegExp(`${prefix}-gone`));
          return true;
        },
      );
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("an address that is not plain (a newline could add an ip -batch line) is refused before anything is created", async () => {
    const prefix = uniquePrefix("rn");
    try {
      const params = await endpointParams(prefix);
      await assert.rejects(createEndpoint({ ...params, ipv4: "10.201.0.13/32 dev lo\nlink del lo" }), {
        code: "ENDPOINT_INVALID",
      });
      assert.ok(!(await listNetns()).includes(params.netns), "no namespace was created");
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });
});
