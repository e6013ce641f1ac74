/**
 * Many endpoints at once and adoption without a process (needs root):
 * createEndpoints builds endpoints that reconcileEndpoint then finds
 * complete (zero changes) and that carry packets; what is in the way goes
 * through the slow path; a bad endpoint is reported without stopping the
 * others; intactEndpoints tells intact from missing from one link dump;
 * verifyEndpoints finds what differs inside a namespace.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createNode, exec, reconcileEndpoint, type EndpointParams } from "../../src/datapath/endpoint.js";
import { createEndpoints, eachLimit } from "../../src/datapath/endpoint-batch.js";
import { ip } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { adoptNode, intactEndpoints, verifyEndpoints, verifyNode } from "../../src/datapath/node-adopt.js";
import { linkStates } from "../../src/datapath/rtnl.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

async function world(prefix: string, n: number): Promise<EndpointParams[]> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.204.0.1",
    gateway6: "fd00:204::1",
    podCidr4: "10.204.0.0/24",
    podCidr6: "fd00:204::/112",
  });
  return Array.from({ length: n }, (_, i) => ({
    node,
    name: `e${i}`,
    netns: `${prefix}-e${i}`,
    hostIfname: `${prefix}h${i}`,
    ipv4: `10.204.0.${i + 10}`,
    ipv6: `fd00:204::${(i + 10).toString(16)}`,
  }));
}

describe("endpoints in a batch, adoption from one link dump (root)", { skip: skip ?? false }, () => {
  test("a batch builds complete endpoints: reconciling them changes nothing, and they reach each other through the node", async () => {
    const prefix = uniquePrefix("eps");
    try {
      const eps = await world(prefix, 4);
      const done: number[] = [];
      const r = await createEndpoints(eps, { concurrency: 2, onProgress: (d) => done.push(d) });
      assert.deepEqual([r.created, r.repaired, r.failed], [4, 0, []]);
      assert.deepEqual(done, [1, 2, 3, 4]);
      for (const p of eps) assert.deepEqual((await reconcileEndpoint(p)).changes, [], p.name);
      const [a, b] = eps as [EndpointParams, EndpointParams];
      const ping4 = await exec(a, ["ping", "-c", "1", "-W", "5", b.ipv4 as string]);
      assert.equal(ping4.status, 0, ping4.stdout + ping4.stderr);
      const ping6 = await exec(a, ["ping", "-6", "-c", "1", "-W", "5", b.ipv6 as string]);
      assert.equal(ping6.status, 0, ping6.stdout + ping6.stderr);
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("what is in the way (a leftover host interface, a half-built namespace) is repaired, a bad endpoint is reported and the rest are built", async () => {
    const prefix = uniquePrefix("eps");
    try {
      const eps = await world(prefix, 4);
      const [e0, e1, e2, e3] = eps as [EndpointParams, EndpointParams, EndpointParams, EndpointParams];
      // e0: its host interface name is taken by a leftover; e1: its namespace exists, empty.
      await ip(["link", "add", e0.hostIfname, "type", "veth", "peer", "name", "x0"], e0.node.netns);
      await ip(["netns", "add", e1.netns]);
      const bad = { ...e3, ipv4: "10.204.0.13\nlink del lo" };
      const r = await createEndpoints([e0, e1, e2, bad]);
      assert.equal(r.created, 1);
      assert.equal(r.repaired, 2);
      assert.equal(r.failed.length, 1);
      assert.equal(r.failed[0]?.name, "e3");
      assert.match(String(r.failed[0]?.error.message), /ipv4/);
      for (const p of [e0, e1, e2]) assert.deepEqual((await reconcileEndpoint(p)).changes, [], p.name);
      const { intact, missing } = await intactEndpoints(e0.node.netns, eps);
      assert.deepEqual([intact.map((p) => p.name), missing.map((p) => p.name)], [["e0", "e1", "e2"], ["e3"]]);
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("adoption reads links without a process: a host veth that is down or gone makes its endpoint missing; verifyEndpoints finds a lost route", async () => {
    const prefix = uniquePrefix("eps");
    try {
      const eps = await world(prefix, 3);
      const [e0, e1, e2] = eps as [EndpointParams, EndpointParams, EndpointParams];
      await createEndpoints(eps);
      const links = await linkStates(e0.node.netns);
      assert.equal(links.get(e0.hostIfname)?.up, true);
      assert.equal(links.get("lo")?.up, true);
      await ip(["link", "set", e0.hostIfname, "down"], e0.node.netns);
      await ip(["netns", "del", e1.netns]);
      const split = await intactEndpoints(e0.node.netns, eps);
      assert.deepEqual(
        [split.intact.map((p) => p.name), split.missing.map((p) => p.name)],
        [["e2"], ["e0", "e1"]],
      );
      await ip(["route", "del", "default"], e2.netns);
      const seen: string[][] = [];
      const n = await verifyEndpoints([e2], async (p, what) => {
        seen.push([p.name, ...what]);
        await reconcileEndpoint(p);
      });
      assert.equal(n, 1);
      assert.deepEqual(seen, [["e2", "endpoint: route replace default via 10.204.0.1 dev eth0"]]);
      assert.equal(await verifyEndpoints([e2], () => Promise.reject(new Error("nothing differs"))), 0);
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("a node is adopted when it was prepared before, and verifyNode puts back a lost gateway", async () => {
    const prefix = uniquePrefix("eps");
    try {
      const p = { netns: `${prefix}-node`, gateway4: "10.205.0.1", podCidr4: "10.205.0.0/24" };
      await assert.rejects(linkStates(p.netns), { code: "NETNS_FAILED" });
      await adoptNode(p); // created
      assert.deepEqual(await verifyNode(p), []);
      await ip(["addr", "del", "10.205.0.1/32", "dev", "lo"], p.netns);
      assert.deepEqual(await verifyNode(p), ["10.205.0.1/32 on lo"]);
      assert.deepEqual(await verifyNode(p), []);
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("eachLimit runs at most n at a time and every item once", async () => {
    let running = 0;
    let peak = 0;
    const seen: number[] = [];
    await eachLimit([1, 2, 3, 4, 5, 6, 7], 3, async (i) => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setImmediate(r));
      seen.push(i);
      running--;
    });
    assert.equal(peak, 3);
    assert.deepEqual(
      seen.sort((a, b) => a - b),
      [1, 2, 3, 4, 5, 6, 7],
    );
  });
});
