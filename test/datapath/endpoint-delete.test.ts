/**
 * Deleting an endpoint (needs root): its processes stopped, its veth and
 * namespace gone, with one process spawned (`ip netns del`): the processes
 * inside are found from /proc and the veth is deleted over rtnetlink.
 */
import cp from "node:child_process";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test } from "node:test";
import { createEndpoint, createNode, deleteEndpoint } from "../../src/datapath/endpoint.js";
import { cleanupPrefix, listNetns } from "../../src/datapath/netns.js";
import { linkStates } from "../../src/datapath/rtnl.js";
import { netnsPids } from "../../src/datapath/workload.js";
import { rootSkipReason } from "./harness.js";
import { spawned } from "./spawn-spy.js";

const skip = rootSkipReason();

describe("endpoint delete (root)", { skip: skip ?? false }, () => {
  test("stops the process inside, deletes veth and namespace, and spawns only `ip netns del`", async () => {
    const prefix = `mx2${randomBytes(2).toString("hex")}d`;
    try {
      const node = await createNode({ netns: `${prefix}-node`, gateway4: "10.208.0.1" });
      const ep = await createEndpoint({
        node,
        name: "a",
        netns: `${prefix}-ep1`,
        hostIfname: `${prefix}h1`,
        ipv4: "10.208.0.5",
      });
      const sleeper = cp.spawn("nsenter", [`--net=/run/netns/${ep.netns}`, "sleep", "600"], {
        stdio: "ignore",
      });
      for (let i = 0; i < 100 && !(await netnsPids(ep.netns)).includes(sleeper.pid ?? -1); i++) {
        await sleep(50);
      }
      assert.deepEqual(await netnsPids(ep.netns), [sleeper.pid], "the process inside is found from /proc");
      let stopped = 0;
      const argv = await spawned(async () => {
        stopped = await deleteEndpoint(ep);
      });
      assert.equal(stopped, 1);
      assert.deepEqual(argv, [["ip", "netns", "del", ep.netns]]);
      assert.equal((await listNetns()).includes(ep.netns), false, "namespace gone");
      assert.equal((await linkStates(node.netns)).has(ep.hostIfname), false, "host end gone at once");
      assert.deepEqual(await netnsPids(ep.netns), []);
      await deleteEndpoint(ep); // gone already: a no-op
    } finally {
      await cleanupPrefix(prefix);
    }
  });
});
