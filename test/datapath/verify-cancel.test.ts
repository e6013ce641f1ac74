/**
 * An apply that overtakes the background check kills the check's read (needs root: nftables
 * in a scratch namespace). The check compares with a state the apply replaced, so its answer
 * would be dropped anyway; before, its `nft -j list table` (seconds of CPU at 1,000 endpoints
 * and 50,000 hosts) and the parse went on beside the first applies after a restart. The apply
 * never waits for the check; the next check reads again and still finds a hand edit.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathState } from "../../src/datapath/types.js";
import { HostTable } from "../../src/ipcache/hosts.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

/** This process's `nft` children that are not zombies (the check's reader). */
function readers(): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "latin1");
      const comm = st.slice(st.indexOf("(") + 1, st.lastIndexOf(")"));
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      if (Number(f[1]) === process.pid && comm === "nft" && f[0] !== "Z") out.push(Number(d));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

describe("an apply cancels an overtaken check (root)", { skip: skip ?? false }, () => {
  const prefix = `sc${uniquePrefix("vc")}`;
  let node: NamedNodeNetns;
  const hosts = new HostTable();
  // Enough elements that a read takes a while (the test catches it running).
  for (let i = 0; i < 20_000; i++)
    hosts.set(`10.${214 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, 1001 + (i % 7));
  const state = (): DatapathState => ({ hostIdentity: 1, rules: [], ipcache: [], hosts, endpoints: [] });

  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("an apply while the check's nft runs: the apply completes, the read is killed, the check answers no drift; the next check still finds a hand edit", async () => {
    const r = new Reconciler({ netns: node.netns, table: "mbrvc" });
    try {
      await r.apply(state());
      let extra = 0;
      // Checks until one is caught with its nft running and cancelled. A read seen running may
      // still end before the apply's cancel reaches it (a loaded machine): that round's check
      // compares, finds itself stale and reports nothing, and the loop tries again.
      let caught = 0;
      for (let i = 0; i < 50 && r.stats.checksCancelled === 0; i++) {
        const v = r.verify();
        let ended = false;
        void v.finally(() => (ended = true)).catch(() => undefined);
        while (!ended && readers().length === 0) await new Promise((res) => setImmediate(res));
        if (ended) continue;
        caught++;
        // The apply overtakes the running check (an element delta through nfnl: no nft of its own).
        hosts.set(`10.99.0.${++extra}`, 1003);
        assert.equal((await r.apply(state())).ops, 1, "the apply went through");
        assert.deepEqual(await v, { drift: 0, lines: [] }, "an overtaken check reports nothing");
      }
      assert.ok(caught > 0, "a check was caught with its nft running");
      assert.equal(r.stats.checksCancelled, 1, `an overtaken check's read was cancelled (${caught} caught)`);
      assert.deepEqual(readers(), [], "its nft was killed and reaped");
      // The worker goes on: the next check reads the whole table again and finds a hand edit.
      assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
      await nftApply(`delete element inet mbrvc ipcache4_host { 10.214.0.7 }\n`, { netns: node.netns });
      assert.ok((await r.verify()).drift > 0, "a hand edit is still found");
    } finally {
      await r.stop();
    }
  });
});
