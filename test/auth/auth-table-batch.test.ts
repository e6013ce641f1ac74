// The kernel table of authenticated pairs (datapath/auth-table.ts) under bursts, for real (root, nft,
// iptables, a throwaway namespace): writes that arrive while one `nft` transaction runs join the
// next, and the kernel ends as the calls' order says (an add then a remove of one pair leaves it
// out; a remove then an add leaves it in).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import { AuthTable } from "../../src/datapath/auth-table.js";
import { cleanupPrefix, createNetns } from "../../src/datapath/netns.js";
import { rootSkipReason, uniquePrefix } from "../datapath/harness.js";

const skip =
  rootSkipReason() ??
  (spawnSync("sh", ["-c", "command -v iptables"]).status !== 0 ? "needs iptables" : undefined);

const pair = (src: number, dst: number): { src: number; dst: number; srcNets: string[]; dstNets: string[] } => ({ src, dst, srcNets: ["10.1.0.0/24"], dstNets: ["10.2.0.0/24"] }); // prettier-ignore

describe("auth table writes in bursts (root)", { skip }, () => {
  test("a burst of adds and removes lands in call order", async () => {
    const prefix = uniquePrefix("m3a");
    const ns = `${prefix}-t`;
    try {
      await createNetns(ns);
      const t = new AuthTable("m3atab", ns);
      await t.install();
      // 30 pairs at once, then, in one burst: 300->400 removed after its add; 301->400 added after its remove.
      await Promise.all(Array.from({ length: 30 }, (_, i) => t.add([pair(300 + i, 400)], 60)));
      assert.ok(t.stats.transactions <= 2, `30 writes at once took ${t.stats.transactions} nft transactions`);
      const burst = [
        t.add([pair(300, 400)], 60),
        t.remove([pair(300, 400)]),
        t.remove([pair(301, 400)]),
        t.add([pair(301, 400)], 60),
        t.add([pair(500, 600)], 60),
      ];
      await Promise.all(burst);
      const have = new Set((await t.list()).map((e) => `${e.src}>${e.dst}`));
      assert.equal(have.size, 30, [...have].join(" "));
      assert.ok(!have.has("300>400"), "added then removed: out");
      assert.ok(have.has("301>400"), "removed then added: in");
      assert.ok(have.has("500>600") && have.has("329>400"));
    } finally {
      await cleanupPrefix(prefix);
    }
  });
});
