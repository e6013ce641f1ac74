/**
 * Reconciler.verify() in the background (needs root: nftables in a scratch namespace):
 * a table that holds what was applied is read, parsed and compared in a worker thread
 * (the event loop parses nothing); every kind of hand edit is still found, and the next
 * apply repairs it by delta, as before.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../../src/datapath/types.js";
import { HostTable } from "../../src/ipcache/hosts.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();

const allow = (identity: number, port: number): PolicySegment => ({
  identity,
  proto: 6,
  lo: port,
  hi: port,
  action: "allow",
  ruleId: 1,
});
const ep = (id: number, segs: PolicySegment[]): DatapathEndpoint => ({
  id,
  name: `ep${id}`,
  hostIfname: `vbv${id}`,
  ipv4: `10.202.0.${id}`,
  ipv6: `fd00:202::${id}`,
  identity: 1000 + id,
  ingress: { enforced: true, segments: segs },
  egress: { enforced: false, segments: [] },
});

describe(
  "verify() in the background (root: nftables in a scratch namespace)",
  { skip: skip ?? false },
  () => {
    const prefix = uniquePrefix("vb");
    let node: NamedNodeNetns;
    const table = "mbrvb";
    const hosts = new HostTable();
    for (let i = 1; i <= 300; i++) hosts.set(`10.203.${i >> 8}.${i & 255}`, 1001 + (i % 3));
    hosts.set("fd00:203::1", 1002);
    const state = (): DatapathState => ({
      hostIdentity: 1,
      rules: [{ id: 1, text: "default/allow-web spec.ingress[0]" }],
      ipcache: [{ prefix: "10.77.0.0/16", identity: 1005 }],
      hosts,
      endpoints: [ep(1, [allow(1002, 80)]), ep(2, [allow(1001, 80), allow(0, 53)])],
    });
    const ns = (): { netns: string } => ({ netns: node.netns });

    before(async () => {
      node = await createNode({ netns: `${prefix}-node` });
    });
    after(async () => {
      await cleanupPrefix(prefix + "-");
    });

    test("a table that holds what was applied is read and compared in the worker thread: nothing is parsed on the event loop", async () => {
      const r = new Reconciler({ netns: node.netns, table });
      try {
        assert.ok((await r.apply(state())).ops > 0);
        const readBacks = r.stats.readBacks;
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        assert.equal(r.stats.checksOffThread, 2, "both checks compared in the worker");
        assert.equal(r.stats.readBacks, readBacks, "no read-back parsed on the event loop");
        // After an incremental change (through nfnl) too.
        hosts.set("10.203.9.9", 1003);
        assert.equal((await r.apply(state())).ops, 1);
        assert.equal((await r.verify()).drift, 0);
        assert.equal(r.stats.readBacks, readBacks);
        hosts.delete("10.203.9.9");
        assert.equal((await r.apply(state())).ops, 1);
      } finally {
        r.stop();
      }
    });

    test("after the first check, a check sends the worker only the host addresses changed since the last one (not every host), and host edits by hand are still found", async () => {
      const r = new Reconciler({ netns: node.netns, table: "mbrvbd" });
      try {
        await r.apply(state());
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        const all = r.stats.hostLinesSent;
        assert.equal(all, hosts.size, "the first check sends every host");
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        assert.equal(r.stats.hostLinesSent, all, "nothing changed: no host sent");
        hosts.set("10.203.9.8", 1003);
        hosts.set("10.203.0.9", 1009);
        await r.apply(state());
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        assert.equal(r.stats.hostLinesSent, all + 2, "two addresses changed: two sent");
        hosts.delete("10.203.9.8");
        hosts.set("10.203.0.9", 1001 + (9 % 3));
        await r.apply(state());
        assert.deepEqual(await r.verify(), { drift: 0, lines: [] });
        assert.equal(r.stats.hostLinesSent, all + 4);
        // The worker compares every host it holds with the kernel: an edit of one not sent is found.
        await nftApply(`delete element inet mbrvbd ipcache4_host { 10.203.0.10 }\n`, ns());
        assert.ok((await r.verify()).drift > 0, "a host removed by hand is found");
        await r.apply(state());
        assert.equal((await r.verify()).drift, 0, "repaired");
      } finally {
        await r.stop();
      }
    });

    test("the worker thread does not keep a process alive: a program that verified and never stopped its Reconciler exits", async () => {
      const url = (p: string): string => new URL(p, import.meta.url).href;
      const program = `
      const { Reconciler } = await import(${JSON.stringify(url("../../src/datapath/reconcile.js"))});
      const r = new Reconciler({ netns: ${JSON.stringify(node.netns)}, table: "mbrvbexit" });
      await r.apply({ hostIdentity: 1, rules: [], ipcache: [], endpoints: [] });
      console.log(JSON.stringify(await r.verify()));`;
      const child = spawn(process.execPath, ["--input-type=module", "-e", program], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      // A safety net, not a time bound: a process kept alive is killed and the test fails.
      const safety = setTimeout(() => child.kill("SIGKILL"), 120_000);
      const [code, signal] = await new Promise<[number | null, string | null]>((res) =>
        child.on("exit", (c, s) => res([c, s])),
      );
      clearTimeout(safety);
      assert.equal(signal, null, "the program did not exit by itself");
      assert.equal(code, 0);
      assert.deepEqual(JSON.parse(out), { drift: 0, lines: [] }, "the verify answered before the exit");
    });

    const T = `inet ${table}`;
    const edits: { name: string; nft: string }[] = [
      { name: "a host element removed", nft: `delete element ${T} ipcache4_host { 10.203.0.7 }` },
      { name: "a host element added", nft: `add element ${T} ipcache4_host { 10.203.7.7 : 1005 }` },
      {
        name: "a host element with another identity",
        nft: `delete element ${T} ipcache4_host { 10.203.0.8 }\nadd element ${T} ipcache4_host { 10.203.0.8 : 1009 }`,
      },
      { name: "an IPv6 host element removed", nft: `delete element ${T} ipcache6_host { fd00:203::1 }` },
      {
        name: "an endpoint's (its policy group's) element removed",
        nft: `delete element ${T} g2_in_any { 6 . 53 }`,
      },
      {
        name: "an endpoint's (its policy group's) element added",
        nft: `add element ${T} g2_in_any { 6 . 22 : accept }`,
      },
      { name: "a rule added to an endpoint's chain", nft: `add rule ${T} e1_in accept` },
      { name: "a chain that is not ours", nft: `add chain ${T} handmade` },
      { name: "a map that is not ours", nft: `add map ${T} handmap { type ipv4_addr : mark; }` },
      {
        name: "the stamp rewritten",
        nft: `delete element ${T} stamp { 0 }\nadd element ${T} stamp { 0 : 12345 }`,
      },
    ];
    for (const e of edits) {
      test(`${e.name} by hand is found by the background check and repaired by the next apply`, async () => {
        const r = new Reconciler({ netns: node.netns, table });
        try {
          await r.apply(state());
          assert.equal((await r.verify()).drift, 0, "the table holds what was applied");
          await nftApply(e.nft + "\n", ns());
          const v = await r.verify();
          assert.ok(v.drift > 0, `found: ${JSON.stringify(v)}`);
          assert.ok((await r.apply(state())).ops >= 0);
          assert.equal((await r.verify()).drift, 0, "repaired");
          assert.equal(r.stats.checksOffThread, 3);
        } finally {
          r.stop();
        }
      });
    }
  },
);
