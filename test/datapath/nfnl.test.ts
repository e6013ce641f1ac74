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
import {
  renumberBatch,
  setElemBatch,
  VERDICT,
  type SetElemOps,
  type WireElement,
} from "../../src/abi/nft-setelem-wire.js";
import { attr, nest } from "../../src/abi/ctnetlink-wire.js";
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

  /** The encoder as it was, one buffer per attribute (a reference: the bytes must not change). */
  function referenceBatch(table: string, ops: readonly SetElemOps[], firstSeq: number): Buffer {
    const cstr = (x: string): Buffer => Buffer.from(x + "\0");
    const msg = (type: number, flags: number, seq: number, fam: number, res: number, body: Buffer) => {
      const h = Buffer.alloc(20);
      h.writeUInt32LE(20 + body.length, 0);
      h.writeUInt16LE(type, 4);
      h.writeUInt16LE(flags, 6);
      h.writeUInt32LE(seq, 8);
      h.writeUInt8(fam, 16);
      h.writeUInt16BE(res, 18);
      return Buffer.concat([h, body]);
    };
    const u32 = (v: number, be: boolean): Buffer => {
      const b = Buffer.alloc(4);
      if (be) b.writeInt32BE(v, 0);
      else b.writeUInt32LE(v, 0);
      return b;
    };
    const el = (e: WireElement, data: boolean): Buffer =>
      nest(1, [
        nest(1, [attr(1, e.key)]),
        ...(e.keyEnd ? [nest(10, [attr(1, e.keyEnd)])] : []),
        ...(!data
          ? []
          : e.verdict
            ? [
                nest(2, [
                  nest(2, [
                    attr(1, u32(e.verdict.code, true)),
                    ...(e.verdict.chain !== undefined ? [attr(2, cstr(e.verdict.chain))] : []),
                  ]),
                ]),
              ]
            : [nest(2, [attr(1, u32(e.value ?? 0, false))])]),
      ]);
    let seq = firstSeq;
    const parts = [msg(0x10, 1, seq++, 0, 10, Buffer.alloc(0))];
    for (const [type, flags, pick] of [
      [0xa0e, 5, (o: SetElemOps) => o.del],
      [0xa0c, 0x405, (o: SetElemOps) => o.add],
    ] as const) {
      for (const o of ops) {
        const els = pick(o);
        if (els.length === 0) continue;
        const body = Buffer.concat([
          attr(1, cstr(table)),
          attr(2, cstr(o.set)),
          nest(
            3,
            els.map((e) => el(e, type === 0xa0c)),
          ),
        ]);
        parts.push(msg(type, flags, seq++, 1, 0, body));
      }
    }
    parts.push(msg(0x11, 1, seq, 0, 10, Buffer.alloc(0)));
    return Buffer.concat(parts);
  }

  test("a batch is byte for byte what one buffer per attribute gave (keys, key ends, marks, verdicts with and without chains)", () => {
    const k = (n: number, len: number): Buffer => Buffer.alloc(len, n);
    const ops: SetElemOps[] = [
      {
        set: "e1_in_id",
        add: [
          { key: k(1, 12), keyEnd: k(2, 12), verdict: { code: VERDICT.goto, chain: "e1_in_a1" } },
          { key: k(3, 12), keyEnd: k(3, 12), verdict: { code: VERDICT.return } },
          { key: k(4, 12), keyEnd: k(5, 12), verdict: { code: VERDICT.jump, chain: "abc" } },
        ],
        del: [{ key: k(6, 12), keyEnd: k(7, 12) }],
      },
      { set: "ipcache4_host", add: [{ key: k(9, 4), value: 0xfffffff0 }], del: [{ key: k(8, 4) }] },
      { set: "ipcache6_host", add: [{ key: k(10, 16), value: 7 }], del: [] },
      { set: "empty", add: [], del: [] },
    ];
    assert.deepEqual(setElemBatch("membrane", ops, 7).bytes, referenceBatch("membrane", ops, 7));
    // Renumbered by the writer process: the same bytes as if numbered there, and the seqs to await.
    const b = setElemBatch("membrane", ops, 0).bytes;
    assert.deepEqual(renumberBatch(b, 7), setElemBatch("membrane", ops, 7).seqs);
    assert.deepEqual(b, referenceBatch("membrane", ops, 7));
  });

  test("the writer process refuses bytes that are not a batch of chain, rule, set or element changes", () => {
    const good = setElemBatch(
      "t",
      [{ set: "m", add: [{ key: Buffer.alloc(4), value: 1 }], del: [] }],
      0,
    ).bytes;
    assert.throws(() => renumberBatch(good.subarray(0, good.length - 4), 1), /BATCH_END|length/);
    const other = Buffer.from(good);
    for (const m of [0, 2, 18, 21]) {
      // NEWTABLE, DELTABLE, NEWOBJ, DELOBJ instead of NEWSETELEM
      other.writeUInt16LE((10 << 8) | m, 20 + 4);
      assert.throws(() => renumberBatch(other, 1), /type/);
    }
    other.writeUInt16LE((10 << 8) | 3, 20 + 4); // NEWCHAIN: a writable kind (nfnl/objects.ts)
    assert.deepEqual(renumberBatch(other, 1), [2]);
    assert.throws(() => renumberBatch(Buffer.alloc(0), 1), /empty/);
    assert.throws(
      () =>
        setElemBatch(
          "t",
          [{ set: "m", add: [{ key: Buffer.alloc(4), verdict: { code: -4, chain: "a b" } }], del: [] }],
          0,
        ),
      /bad chain name/,
    );
  });
});
