/**
 * The adopted endpoints' check after a restart (verifyEndpoints) gives way to changes: it
 * awaits the caller's `yieldNow` (the agent: until its work queue is quiet) before its first
 * read, before each reading process and every few endpoints compared, and stops when
 * aborted meanwhile. Needs root: the namespaces read are real (made here; the endpoints'
 * are missing, so every endpoint differs and is handed to `repair`).
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createNode, type EndpointParams } from "../../src/datapath/endpoint.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { verifyEndpoints } from "../../src/datapath/node-adopt.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

async function world(prefix: string, n: number): Promise<EndpointParams[]> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.206.0.1",
    podCidr4: "10.206.0.0/24",
  });
  return Array.from({ length: n }, (_, i) => ({
    node,
    name: `e${i}`,
    netns: `${prefix}-e${i}`, // never made: reads as empty, so it differs
    hostIfname: `${prefix}h${i}`,
    ipv4: `10.206.0.${i + 10}`,
  }));
}

describe("verifyEndpoints yields to changes (root)", { skip: skip ?? false }, () => {
  test("it yields before reading anything and between slices of endpoints", async () => {
    const prefix = uniquePrefix("apv");
    try {
      const eps = await world(prefix, 60);
      const events: string[] = [];
      const n = await verifyEndpoints(
        eps,
        async (p) => void events.push(p.name),
        undefined,
        async () => void events.push("yield"),
      );
      assert.equal(n, 60);
      assert.equal(events[0], "yield", "nothing read before the first yield");
      const yields = events.filter((e) => e === "yield").length;
      assert.ok(yields >= 1 + Math.ceil(60 / 25), `yields between slices (got ${yields})`);
      // No run of more than 25 endpoints without a yield.
      let run = 0;
      for (const e of events) {
        run = e === "yield" ? 0 : run + 1;
        assert.ok(run <= 25, "at most a slice of endpoints between two yields");
      }
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });

  test("while the yield holds, nothing is repaired; aborted meanwhile, it stops at once (agent stop does not wait for a quiet queue)", async () => {
    const prefix = uniquePrefix("apv");
    try {
      const eps = await world(prefix, 3);
      const ac = new AbortController();
      let release = (): void => undefined;
      let asked = 0;
      const repaired: string[] = [];
      const check = verifyEndpoints(
        eps,
        async (p) => void repaired.push(p.name),
        ac.signal,
        () => {
          asked++;
          return new Promise<void>((r) => (release = r));
        },
      );
      let ended = false;
      void check.finally(() => (ended = true));
      while (asked === 0 && !ended) await new Promise((r) => setImmediate(r));
      assert.equal(asked, 1, "the check asked to go on");
      assert.deepEqual(repaired, [], "the agent is busy: nothing checked yet");
      ac.abort(); // the agent stops: the check ends without waiting for the yield
      const net = new Promise<never>((_, reject) => {
        const t = setTimeout(() => reject(new Error("the check still waits for the yield")), 30_000);
        void check.finally(() => clearTimeout(t)); // a safety net, not a duration
      });
      assert.equal(await Promise.race([check, net]), 0);
      release();
      assert.deepEqual(repaired, []);
    } finally {
      await cleanupPrefix(`${prefix}-`);
    }
  });
});
