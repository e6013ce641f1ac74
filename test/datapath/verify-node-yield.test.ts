/**
 * The node's and the adopted endpoints' background reads after a restart give way to changes
 * twice: before their process starts and again before its output is parsed (the node's state
 * at 1,000 endpoints is ~600 KB of JSON, parsed on the agent's loop; before, a read that ended
 * during the first apply after a restart was parsed inside it). verifyNode reads only lo and
 * the blackholes, not the node's veths and routes. Needs root: the namespaces are real.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createNode } from "../../src/datapath/endpoint.js";
import { readNetnsStates } from "../../src/datapath/endpoint-state.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { verifyNode } from "../../src/datapath/node-adopt.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();
const prefixOf = (): string => `sc${uniquePrefix("vn")}`;

describe("background reads of the node yield before parsing (root)", { skip: skip ?? false }, () => {
  test("verifyNode yields before its read and before the parse; a dual-stack node reads as intact", async () => {
    const prefix = prefixOf();
    try {
      const p = {
        netns: `${prefix}-node`,
        gateway4: "10.207.0.1",
        gateway6: "fd00:207::1",
        podCidr4: "10.207.0.0/24",
        podCidr6: "fd00:207::/112",
      };
      await createNode(p);
      let yields = 0;
      const missing = await verifyNode(p, async () => void yields++);
      // Before: the IPv6 blackhole was never listed ("type unicast"), so every restart re-made the node.
      assert.deepEqual(missing, [], "nothing is missing on a node just made");
      assert.equal(yields, 2, "one yield before the process, one before the parse");
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("readNetnsStates holds its answer while beforeParse holds, and parses after", async () => {
    const prefix = prefixOf();
    try {
      const node = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.208.0.1",
        podCidr4: "10.208.0.0/24",
      });
      let release = (): void => undefined;
      let asked = false;
      const read = readNetnsStates([node.netns as string], {
        background: true,
        beforeParse: () => {
          asked = true;
          return new Promise<void>((r) => (release = r));
        },
      });
      let answered = false;
      void read.then(() => (answered = true));
      // The process ends, then the reader waits (a safety net bounds the loop, not a duration).
      for (let i = 0; !asked && !answered && i < 100_000; i++) await new Promise((r) => setTimeout(r, 1));
      assert.ok(asked, "beforeParse was awaited once the process ended");
      await new Promise((r) => setImmediate(r));
      assert.equal(answered, false, "no answer while the agent is busy");
      release();
      const states = await read;
      assert.equal(states.get(node.netns as string)?.links.get("lo")?.up, true);
      assert.ok(states.get(node.netns as string)?.routes.has("blackhole 10.208.0.0/24"));
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });
});
