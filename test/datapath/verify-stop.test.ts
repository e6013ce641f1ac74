/**
 * The background check's reader and stop (needs root: nftables in a scratch namespace):
 * stopping a Reconciler while its worker thread runs `nft -j list table` kills and reaps
 * that `nft` (no zombie, no orphan left in the process); the worker thread and the `nft`
 * it starts run at the lowest priority (nice 19), and the check waits while the agent has
 * a change in hand (ReconcilerParams.idle), so that it gives way to changes.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { VERIFY_NICE } from "../../src/datapath/verify-worker.js";
import { HostTable } from "../../src/ipcache/hosts.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

/** This process's child processes: pid, command name, state (R, S, Z, ...), nice. */
function children(): { pid: number; comm: string; state: string; nice: number }[] {
  const out: { pid: number; comm: string; state: string; nice: number }[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "latin1");
      const comm = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === process.pid)
        out.push({ pid: Number(d), comm, state: f[0] ?? "", nice: Number(f[16]) });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

const readers = (): ReturnType<typeof children> =>
  children().filter((c) => c.comm === "nft" || c.comm === "ip");

describe(
  "the background check's reader (root: nftables in a scratch namespace)",
  { skip: skip ?? false },
  () => {
    const prefix = uniquePrefix("vs");
    let node: NamedNodeNetns;
    const hosts = new HostTable();
    // Enough elements that a read takes a while (the test catches it running).
    for (let i = 0; i < 20_000; i++)
      hosts.set(`10.${204 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, 1001 + (i % 7));
    const state = (): DatapathState => ({ hostIdentity: 1, rules: [], ipcache: [], hosts, endpoints: [] });

    before(async () => {
      node = await createNode({ netns: `${prefix}-node` });
    });
    after(async () => {
      await cleanupPrefix(prefix + "-");
    });

    test("stopping while the worker runs nft kills and reaps it: no nft process of ours is left, neither running nor zombie", async () => {
      const r = new Reconciler({ netns: node.netns, table: "mbrvs" });
      let stopped = false;
      try {
        await r.apply(state());
        assert.deepEqual(readers(), [], "no reader before the check");
        // Checks until one is caught with its nft running (a read may end before it is seen).
        let seen: ReturnType<typeof children> = [];
        for (let i = 0; i < 50 && seen.length === 0; i++) {
          const v = r.verify().catch(() => undefined);
          while (seen.length === 0) {
            seen = readers().filter((c) => c.state !== "Z");
            if (seen.length > 0) break;
            const done = await Promise.race([
              v.then(() => true),
              new Promise((res) => setImmediate(res, false)),
            ]);
            if (done) break;
          }
        }
        assert.ok(seen.length > 0, "an nft read was caught running");
        assert.ok(
          seen.every((c) => c.nice === VERIFY_NICE),
          `the reader runs at nice ${VERIFY_NICE}: ${JSON.stringify(seen)}`,
        );
        await r.stop();
        stopped = true;
        assert.deepEqual(readers(), [], "no nft left behind (running or zombie)");
      } finally {
        if (!stopped) await r.stop();
      }
    });

    test("the check neither builds its view nor reads while the agent has a change in hand, and goes on once it has none", async () => {
      let busy = true;
      let idleCalls = 0;
      let release: () => void = () => undefined;
      const idle = (): Promise<void> => {
        idleCalls++;
        return busy ? new Promise((res) => (release = res)) : Promise.resolve();
      };
      // The bound on a wait is a safety net far beyond this test.
      const r = new Reconciler({ netns: node.netns, table: "mbrvi", idle, idleMaxMs: 600_000 });
      try {
        await r.apply(state());
        let answered = false;
        const v = r.verify().then((x) => {
          answered = true;
          return x;
        });
        // Turns of the event loop while the agent is busy: the check waits at its first slice.
        for (let i = 0; i < 200; i++) await new Promise((res) => setImmediate(res));
        assert.ok(idleCalls >= 1, "the check asked whether the agent is idle");
        assert.equal(answered, false, "the check waits while the agent is busy");
        assert.deepEqual(readers(), [], "nothing read while the agent is busy");
        assert.equal(r.stats.checksOffThread, 0);
        busy = false;
        release();
        assert.deepEqual(await v, { drift: 0, lines: [] });
        assert.equal(r.stats.checksOffThread, 1, "the check ran once the agent was idle");
      } finally {
        await r.stop();
      }
    });
  },
);
