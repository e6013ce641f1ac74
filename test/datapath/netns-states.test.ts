/**
 * readNetnsStates (needs root): many namespaces read by one process hold
 * exactly what readNetnsState reads one by one; a missing namespace reads
 * as empty; a name that is not one is refused before any shell sees it.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { createEndpoint, createNode } from "../../src/datapath/endpoint.js";
import { EMPTY_NETNS, readNetnsState, readNetnsStates } from "../../src/datapath/endpoint-state.js";
import { cleanupPrefix, createNetns } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";
import { until } from "../support/until.js";

const skip = rootSkipReason();

describe("namespace state read in bulk (root)", { skip: skip ?? false }, () => {
  test("one process reads what readNetnsState reads, namespace by namespace", async () => {
    const prefix = uniquePrefix("ns");
    try {
      const node = await createNode({
        netns: `${prefix}-node`,
        gateway4: "10.202.0.1",
        gateway6: "fd00:202::1",
        podCidr4: "10.202.0.0/24",
      });
      const eps = ["a", "b", "c"];
      for (const [i, name] of eps.entries()) {
        await createEndpoint({
          node,
          name,
          netns: `${prefix}-ep-${name}`,
          hostIfname: `${prefix}h${i}`,
          ipv4: `10.202.0.${11 + i}`,
          ...(i === 1 ? {} : { ipv6: `fd00:202::${11 + i}` }),
        });
      }
      await createNetns(`${prefix}-empty`);
      const names = [
        ...eps.map((n) => `${prefix}-ep-${n}`),
        `${prefix}-empty`,
        `${prefix}-node`,
        `${prefix}-gone`,
      ];
      // The kernel gives each link that comes up its own IPv6 link-local address (and a fe80::/64
      // route) a moment later: wait until every link has it, so both reads see the settled state.
      const settled = async (n: string): Promise<boolean> =>
        [...(await readNetnsState(n)).links].every(
          ([name, l]) =>
            name === "lo" || !l.up || [...l.addrs].some((a) => a.startsWith("fe80:") && a !== "fe80::1/64"),
        );
      for (const n of names) await until(`${n}'s links to have their link-local addresses`, () => settled(n));
      const bulk = await readNetnsStates(names);
      assert.deepEqual([...bulk.keys()].sort(), [...names].sort());
      for (const n of names) assert.deepEqual(bulk.get(n), await readNetnsState(n), n);
      assert.ok(
        (bulk.get(`${prefix}-ep-a`)?.links.get("eth0")?.addrs.size ?? 0) >= 2,
        "eth0 read with its addresses",
      );
      assert.ok(bulk.get(`${prefix}-ep-b`)?.routes.has("default via 10.202.0.1 dev eth0"));
      assert.deepEqual(bulk.get(`${prefix}-gone`), EMPTY_NETNS);
      await assert.rejects(
        readNetnsStates([`${prefix}-ep-a`, "x; touch /tmp/owned"]),
        /not a namespace name/,
      );
    } finally {
      await cleanupPrefix(prefix + "-");
    }
  });
});
