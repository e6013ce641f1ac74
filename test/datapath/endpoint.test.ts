/**
 * Node and endpoint namespaces (needs root): creation, idempotence, cleanup.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createEndpoint, createNode, deleteEndpoint, exec } from "../../src/datapath/endpoint.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

describe("endpoints as network namespaces (root)", { skip: skip ?? false }, () => {
  test("an endpoint gets its addresses and routes, creating it again changes nothing, and it reaches the node", async () => {
    const prefix = uniquePrefix("en");
    try {
      const node = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.200.0.1",
        gateway6: "fd00:200::1",
        podCidr4: "10.200.0.0/24",
      });
      const params = {
        node,
        name: "a",
        netns: `${prefix}-ep-a`,
        hostIfname: `${prefix}h1`,
        ipv4: "10.200.0.11",
        ipv6: "fd00:200::b",
      };
      const ep = await createEndpoint(params);
      const addrs = async (): Promise<string> =>
        (await exec(ep, ["ip", "-br", "addr", "show", "dev", "eth0"])).stdout.replace(/\s+/g, " ").trim();
      const before = await addrs();
      assert.match(before, /^eth0@if\d+ UP 10\.200\.0\.11\/32 fd00:200::b\/128 fe80::\S+\/64$/);
      await createEndpoint(params);
      assert.equal(await addrs(), before, "idempotent");
      const routes = (await exec(ep, ["ip", "route"])).stdout;
      assert.match(routes, /^default via 10\.200\.0\.1 dev eth0/m);
      assert.equal((await exec(ep, ["ping", "-c1", "-W1", "10.200.0.1"])).status, 0);
      assert.equal((await exec(ep, ["ping", "-c1", "-W1", "fd00:200::1"])).status, 0);
      await deleteEndpoint(ep);
      assert.ok(!(await listNetns()).includes(params.netns));
    } finally {
      await cleanupPrefix(prefix + "-");
    }
    assert.deepEqual(
      (await listNetns()).filter((n) => n.startsWith(prefix)),
      [],
      "cleanupPrefix removed every namespace",
    );
  });

  test("a half-built endpoint (veth lost on the endpoint side) is repaired by creating it again", async () => {
    const prefix = uniquePrefix("eh");
    try {
      const node = await createNode({ netns: `${prefix}-node`, gateway4: "10.200.0.1" });
      const params = {
        node,
        name: "a",
        netns: `${prefix}-ep-a`,
        hostIfname: `${prefix}h1`,
        ipv4: "10.200.0.11",
      };
      const ep = await createEndpoint(params);
      await exec(ep, ["ip", "link", "del", "eth0"]);
      await createEndpoint(params);
      assert.equal((await exec(ep, ["ping", "-c1", "-W1", "10.200.0.1"])).status, 0);
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });

  test("an interface name longer than 15 characters is refused before anything is created", async () => {
    const prefix = uniquePrefix("el");
    try {
      const node = await createNode({ netns: `${prefix}-node` });
      await assert.rejects(
        createEndpoint({ node, name: "a", netns: `${prefix}-ep-a`, hostIfname: "x".repeat(16) }),
        {
          code: "ENDPOINT_INVALID",
        },
      );
      assert.ok(!(await listNetns()).includes(`${prefix}-ep-a`));
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });
});
