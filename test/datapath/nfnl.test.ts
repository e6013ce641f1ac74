/**
 * nfnl: map elements written straight to the kernel (nfnl/setelem.ts), in
 * a scratch namespace: what nft reads back is what we meant, a refused batch
 * changes nothing, and the Reconciler takes this path exactly for changes
 * that create, rewrite or remove no chain or map.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, runRaw } from "../../src/datapath/exec.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { setElemBatch, VERDICT } from "../../src/abi/nft-setelem-wire.js";
import { encodeElement } from "../../src/datapath/nfnl/encode.js";
import { SetElemWriter } from "../../src/datapath/nfnl/setelem.js";
import { Reconciler } from "../../src/datapath/reconcile.js";
import type { NftMap } from "../../src/datapath/model.js";
import type { DatapathEndpoint, DatapathState, PolicySegment } from "../../src/datapath/types.js";
import { HostTable } from "../../src/ipcache/hosts.js";
import { rootSkipReason, uniquePrefix } from "./harness.js";

const skip = rootSkipReason();
const iv = (lo: number, hi = lo): { lo: bigint; hi: bigint } => ({ lo: BigInt(lo), hi: BigInt(hi) });

describe("nfnl: map elements without nft (root)", { skip: skip ?? false }, () => {
  const prefix = uniquePrefix("nl");
  let node: NamedNodeNetns;
  const list = async (table: string, map: string): Promise<string> =>
    (await runRaw(["nft", "list", "map", "inet", table, map], { netns: node.netns })).stdout;

  before(async () => {
    node = await createNode({ netns: `${prefix}-node` });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("concatenated interval verdict elements, host marks and IPv6 keys read back as nft writes them", async () => {
    await nftApply(
      `table inet nlt {
  chain c1 { }
  map v { type mark . inet_proto . inet_service : verdict; flags interval; }
  map h4 { type ipv4_addr : mark; }
  map h6 { type ipv6_addr : mark; }
}
`,
      { netns: node.netns },
    );
    const v: NftMap = {
      name: "v",
      fields: ["mark", "proto", "port"],
      valueType: "verdict",
      interval: true,
      elements: [],
    };
    const h4: NftMap = { name: "h4", fields: ["ipv4"], valueType: "mark", interval: false, elements: [] };
    const h6: NftMap = { name: "h6", fields: ["ipv6"], valueType: "mark", interval: false, elements: [] };
    const enc = (m: NftMap, key: { lo: bigint; hi: bigint }[], value: string) => {
      const j = encodeElement(m, { key, value }, false);
      assert.ok(j, `encodable: ${m.name}`);
      return j;
    };
    const w = new SetElemWriter(node.netns);
    try {
      await w.apply("nlt", [
        {
          set: "v",
          add: [
            enc(v, [iv(1001), iv(6), iv(8000, 8010)], "goto c1"),
            enc(v, [iv(70000), iv(17), iv(53)], "return"),
          ],
          del: [],
        },
        { set: "h4", add: [enc(h4, [iv(0x0a000001)], "42")], del: [] },
        {
          set: "h6",
          add: [
            enc(
              h6,
              [{ lo: 0xfd000000000000000000000000000007n, hi: 0xfd000000000000000000000000000007n }],
              "7",
            ),
          ],
          del: [],
        },
      ]);
      const vt = await list("nlt", "v");
      assert.match(vt, /0x000003e9 \. tcp \. 8000-8010 : goto c1/);
      assert.match(vt, /0x00011170 \. udp \. 53 : return/);
      assert.match(await list("nlt", "h4"), /10\.0\.0\.1 : 0x0000002a/);
      assert.match(await list("nlt", "h6"), /fd00::7 : 0x00000007/);

      // A batch the kernel refuses (a deletion of a missing element) changes nothing, not even its adds.
      await assert.rejects(
        w.apply("nlt", [
          { set: "h4", add: [enc(h4, [iv(0x0a000002)], "43")], del: [] },
          { set: "v", add: [], del: [encodeElement(v, { key: [iv(5), iv(6), iv(1)], value: "" }, true)!] },
        ]),
        /ENOENT/,
      );
      assert.doesNotMatch(await list("nlt", "h4"), /10\.0\.0\.2/);
      // Deletion by key (and key end).
      await w.apply("nlt", [
        {
          set: "v",
          add: [],
          del: [encodeElement(v, { key: [iv(1001), iv(6), iv(8000, 8010)], value: "" }, true)!],
        },
      ]);
      assert.doesNotMatch(await list("nlt", "v"), /8000-8010/);
    } finally {
      w.stop();
    }
  });

  test("the Reconciler writes element-only and endpoint-only changes through nfnl and global ones through nft; the kernel equals a from-scratch compile", async () => {
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
      hostIfname: `nlv${id}`,
      ipv4: `10.201.0.${id}`,
      identity: 1000 + id,
      ingress: { enforced: true, segments: segs },
      egress: { enforced: false, segments: [] },
    });
    const hosts = new HostTable();
    hosts.set("10.201.0.1", 1001);
    const state = (port: number, rules = 1): DatapathState => ({
      hostIdentity: 1,
      rules: Array.from({ length: rules }, (_, i) => ({ id: i + 1, text: `r${i + 1}` })),
      ipcache: [],
      hosts,
      endpoints: [
        ep(1, [allow(1002, 80)]),
        ep(2, [allow(1001, port), ...(rules > 1 ? [{ ...allow(1003, 9), ruleId: 2 }] : [])]),
      ],
    });
    const r = new Reconciler({ netns: node.netns, table: "nlr" });
    try {
      await r.apply(state(80));
      const before = { ...r.stats };
      // A port moves: elements only -> nfnl.
      assert.ok((await r.apply(state(81))).ops > 0);
      assert.equal(r.stats.nfnl, before.nfnl + 1);
      assert.equal(r.stats.nft, before.nft);
      // A remote address appears: one host element -> nfnl.
      hosts.set("10.201.9.9", 1003);
      assert.equal((await r.apply(state(81))).ops, 1);
      assert.equal(r.stats.nfnl, before.nfnl + 2);
      // A new rule (a new verdict chain of an endpoint): endpoint objects -> nfnl too (nfnl/objects.ts).
      await r.apply(state(81, 2));
      assert.equal(r.stats.nfnl, before.nfnl + 3);
      assert.equal(r.stats.nft, before.nft);
      // A CIDR in the ipcache (the global part): nft.
      const withCidr = { ...state(81, 2), ipcache: [{ prefix: "10.77.0.0/16", identity: 1005 }] };
      await r.apply(withCidr);
      assert.equal(r.stats.nft, before.nft + 1);
      // The kernel is what a from-scratch plan expects (the stamp included).
      assert.deepEqual(
        (await new Reconciler({ netns: node.netns, table: "nlr", trustMs: 0 }).plan(withCidr)).lines,
        [],
      );
      assert.equal((await r.verify()).drift, 0);
    } finally {
      r.stop();
    }
  });
});

describe("nfnl: batch encoding (no root)", () => {
  test("500 verdict elements with long chain names are split so that no ELEMENTS attribute passes its 16-bit length", () => {
    const chain = "c".repeat(200);
    const add = Array.from({ length: 500 }, (_, i) => ({
      key: Buffer.alloc(12, i & 255),
      keyEnd: Buffer.alloc(12, i & 255),
      verdict: { code: VERDICT.goto, chain },
    }));
    const { bytes, seqs } = setElemBatch("t", [{ set: "m", add, del: [] }], 1);
    assert.ok(seqs.length > 1, "one message could not hold them");
    // Every netlink message (begin, elements..., end) fits, and their lengths add up to the batch.
    let o = 0;
    let n = 0;
    while (o < bytes.length) {
      const len = bytes.readUInt32LE(o);
      assert.ok(len >= 16 && len <= 0xffff + 64, `message ${n} is ${len} bytes`);
      o += len;
      n++;
    }
    assert.equal(o, bytes.length);
    assert.equal(n, seqs.length + 2);
  });
});
