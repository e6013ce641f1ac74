/**
 * abi/nft-object-wire.ts and nfnl/rules.ts, without root: the bytes of each
 * object and rule shape are nft 1.0.6's own (fixtures taken with strace from
 * `nft -f` of the same text), and hostile names and values are refused before
 * anything is encoded.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  delChain,
  delSet,
  flushChain,
  frameBatch,
  newChain,
  newRule,
  newSet,
  type NfMsg,
} from "../../src/abi/nft-object-wire.js";
import { objectMessages, setOf } from "../../src/datapath/nfnl/objects.js";
import { RuleShapeError, ruleOf } from "../../src/datapath/nfnl/rules.js";
import type { CompiledTable, NftMap } from "../../src/datapath/model.js";
import { MembraneError } from "../../src/errors.js";
import { NFT_106 } from "./nft-106-fixtures.js";

const hex = (m: NfMsg): string => m.body.toString("hex");
const map = (name: string, fields: NftMap["fields"]): NftMap => ({
  name,
  fields,
  valueType: "verdict",
  interval: true,
  elements: [],
});

describe("nf_tables object messages (no root)", () => {
  const cases: { name: string; msg: () => NfMsg; type: number; flags: number }[] = [
    { name: "newChain e7_in", msg: () => newChain("t1", "e7_in"), type: 0xa03, flags: 0x400 },
    {
      name: "newSet g7_in_id",
      msg: () => newSet("t1", setOf(map("g7_in_id", ["mark", "proto", "port"]))!, 1),
      type: 0xa09,
      flags: 0x400,
    },
    {
      name: "newSet g7_in_idi",
      msg: () => newSet("t1", setOf(map("g7_in_idi", ["mark", "proto", "byte"]))!, 2),
      type: 0xa09,
      flags: 0x400,
    },
    {
      name: "rule ct established",
      msg: () =>
        newRule("t1", ruleOf("e7_in", 'ct state established,related accept comment "mbr:h=58bd0c280000"')),
      type: 0xa06,
      flags: 0xc00,
    },
    {
      name: "rule ct invalid",
      msg: () => newRule("t1", ruleOf("e7_in", 'ct state invalid log group 1 prefix "mbr:d:e7:in:inv" drop')),
      type: 0xa06,
      flags: 0xc00,
    },
    {
      name: "rule ct mark or",
      msg: () => newRule("t1", ruleOf("g7_in_p4d", "ct mark set ct mark or 0x40000000")),
      type: 0xa06,
      flags: 0xc00,
    },
    {
      name: "rule ip saddr",
      msg: () =>
        newRule(
          "t1",
          ruleOf(
            "e7_out",
            'ip saddr != 10.1.0.7 log group 1 prefix "mbr:d:e7:out:spoof" drop comment "mbr:h=c6b3e167ec0b"',
          ),
        ),
      type: 0xa06,
      flags: 0xc00,
    },
    {
      name: "rule ip6 saddr",
      msg: () =>
        newRule("t1", ruleOf("e7_out", 'ip6 saddr != fd00::7 log group 1 prefix "mbr:d:e7:out:spoof" drop')),
      type: 0xa06,
      flags: 0xc00,
    },
    {
      name: "rule jump",
      msg: () => newRule("t1", ruleOf("e7_out", "jump mark_dst")),
      type: 0xa06,
      flags: 0xc00,
    },
    { name: "flush", msg: () => flushChain("t1", "e7_in"), type: 0xa08, flags: 0 },
    { name: "delSet", msg: () => delSet("t1", "g7_in_id"), type: 0xa0b, flags: 0 },
    { name: "delChain", msg: () => delChain("t1", "e7_in_a1"), type: 0xa05, flags: 0 },
  ];
  for (const c of cases) {
    test(`${c.name}: the bytes nft 1.0.6 sends`, () => {
      const m = c.msg();
      assert.equal(m.type, c.type);
      assert.equal(m.flags, c.flags);
      assert.equal(hex(m), NFT_106[c.name]);
    });
  }

  test("a batch frames every message with its own sequence number and an acknowledgement request", () => {
    const { bytes, seqs } = frameBatch([newChain("t", "e1_in"), delChain("t", "e1_in")], 7);
    assert.deepEqual(seqs, [8, 9]);
    let o = 0;
    const types: number[] = [];
    while (o < bytes.length) {
      const len = bytes.readUInt32LE(o);
      types.push(bytes.readUInt16LE(o + 4));
      if (types.length === 2) assert.equal(bytes.readUInt16LE(o + 6), 0x400 | 0x5, "CREATE|REQUEST|ACK");
      o += (len + 3) & ~3;
    }
    assert.deepEqual(types, [0x10, 0xa03, 0xa05, 0x11]);
  });
});

describe("hostile names and values are refused before encoding (no root)", () => {
  const refused: { name: string; run: () => unknown; message: RegExp }[] = [
    { name: "a chain name with a space", run: () => newChain("t", "e1_in x"), message: /bad chain name/ },
    {
      name: "a 300-character chain name",
      run: () => newChain("t", "e".repeat(300)),
      message: /bad chain name/,
    },
    { name: "a table name with a quote", run: () => flushChain('t"', "e1_in"), message: /bad table name/ },
    {
      name: "a comment over nft's 128 characters",
      run: () =>
        newRule("t", { chain: "e1_in", exprs: [{ op: "verdict", code: 1 }], comment: "c".repeat(129) }),
      message: /bad rule comment/,
    },
    {
      name: "a log prefix over 127 characters",
      run: () => newRule("t", { chain: "e1_in", exprs: [{ op: "log", group: 1, prefix: "p".repeat(128) }] }),
      message: /bad log prefix/,
    },
    {
      name: "a chain compile never names",
      run: () => ruleOf("pre_c", "accept"),
      message: /not an endpoint chain/,
    },
    {
      name: "a jump out of the endpoint's chains",
      run: () => ruleOf("e1_in", "jump pre_c"),
      message: /not an endpoint chain/,
    },
    {
      name: "a lookup in a map that is not an endpoint's",
      run: () => ruleOf("e1_in", "meta l4proto . th dport vmap @ipcache4"),
      message: /not an endpoint map/,
    },
    {
      name: "a protocol over 255",
      run: () => ruleOf("e1_in", "meta l4proto != 300 accept"),
      message: /not in 0..255/,
    },
    {
      name: "a bad address",
      run: () => ruleOf("e1_out", "ip saddr != 10.1 drop"),
      message: /not an IPv4 address/,
    },
    {
      name: "a 600-character rule",
      run: () => ruleOf("e1_in", "accept ".repeat(90)),
      message: /longer than 512/,
    },
  ];
  for (const c of refused) {
    test(`refused: ${c.name}`, () => {
      assert.throws(c.run, (e: Error) => !(e instanceof RuleShapeError) && c.message.test(e.message));
    });
  }

  test("a statement compile does not write is no error: nft writes that change (RuleShapeError)", () => {
    assert.throws(() => ruleOf("e1_in", "meta l4proto { 1, 58 } accept"), RuleShapeError);
    assert.throws(() => ruleOf("e1_in", "accept; flush ruleset"), RuleShapeError);
    const t = (chains: CompiledTable["chains"]): CompiledTable => ({
      family: "inet",
      name: "t",
      maps: [],
      chains,
    });
    assert.equal(
      objectMessages("t", [], [{ want: t([{ name: "e1_in", rules: ["counter accept"] }]), had: t([]) }], []),
      undefined,
    );
  });

  test("a bad value inside an endpoint scope is a DATAPATH_STATE_INVALID error naming it", () => {
    const t = (chains: CompiledTable["chains"]): CompiledTable => ({
      family: "inet",
      name: "t",
      maps: [],
      chains,
    });
    assert.throws(
      () =>
        objectMessages(
          "t",
          [],
          [{ want: t([{ name: "e1_in", rules: ["goto mark_dst_x"] }]), had: t([]) }],
          [],
        ),
      (e: unknown) =>
        e instanceof MembraneError &&
        e.code === "DATAPATH_STATE_INVALID" &&
        /Cannot encode the endpoint objects of table t: goto target mark_dst_x is not an endpoint chain/.test(
          e.message,
        ),
    );
  });
});
