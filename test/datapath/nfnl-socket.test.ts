/**
 * The agent's own nfnetlink socket (nfnl/socket.ts, native/membrane-nfnl-sock.c): the same batches
 * the writer processes get (nfnl-writers.test.ts) are answered alike, in a real scratch namespace;
 * a refused batch applies nothing; hostile answer bytes never pass for an acknowledgement; and the
 * LB table, when a delta fails, forgets what the kernel holds and writes itself whole (fail closed).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { setElemBatch, type SetElemOps } from "../../src/abi/nft-setelem-wire.js";
import { createNode, type NamedNodeNetns } from "../../src/datapath/endpoint.js";
import { nftApply, runRaw } from "../../src/datapath/exec.js";
import { LbTable } from "../../src/datapath/lb-table.js";
import { cleanupPrefix } from "../../src/datapath/netns.js";
import { checkAnswers, NfnlSocket, nfnlSocketAvailable } from "../../src/datapath/nfnl/socket.js";
import { MembraneError } from "../../src/errors.js";
import { rootSkipReason } from "./harness.js";

const skip = rootSkipReason();

const key = (ip: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(ip);
  return b;
};
const mark = (m: number): SetElemOps => ({
  set: "h4",
  add: [{ key: key(0x0a000000 + m), value: m }],
  del: [],
});

/** An acknowledgement datagram: NLMSG_ERROR for `seq` with `errno` (0: done). */
function ack(seq: number, errno: number): Buffer {
  const b = Buffer.alloc(36);
  b.writeUInt32LE(36, 0);
  b.writeUInt16LE(2, 4); // NLMSG_ERROR
  b.writeUInt32LE(seq, 8);
  b.writeInt32LE(-errno, 16);
  return b;
}

describe("the in-process nfnetlink socket: answers (pure)", () => {
  test("every message acknowledged: ok; one error: the batch fails with its errno", () => {
    assert.deepEqual(checkAnswers([ack(11, 0), Buffer.concat([ack(12, 0), ack(13, 0)])], [11, 12, 13]), { ok: true }); // prettier-ignore
    const r = checkAnswers([ack(11, 0), ack(12, 17)], [11, 12, 13]);
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.errno, 17);
    // An error on the batch header (seq 10, not awaited) fails it too.
    assert.equal(checkAnswers([ack(10, 22)], [11]).ok, false);
  });

  test("a missing acknowledgement, or another batch's, is not this batch's success", () => {
    const missing = checkAnswers([ack(11, 0)], [11, 12]);
    assert.deepEqual(missing, { ok: false, why: "1 of 2 messages not acknowledged" });
    assert.equal(checkAnswers([ack(99, 0), ack(3, 0)], [11]).ok, false);
    assert.equal(checkAnswers([], [11]).ok, false);
  });

  test("hostile bytes: truncated, lying lengths, random datagrams never throw and never pass", () => {
    const good = ack(11, 0);
    const lying = Buffer.from(good);
    lying.writeUInt32LE(4096, 0); // says longer than it is
    const short = good.subarray(0, 20);
    const tiny = Buffer.from(good);
    tiny.writeUInt32LE(8, 0); // shorter than a header
    for (const d of [lying, short, tiny, Buffer.alloc(0)]) assert.equal(checkAnswers([d], [11]).ok, false);
    for (let i = 0; i < 2000; i++) {
      const d = randomBytes(1 + (i % 200));
      assert.equal(checkAnswers([d], [0x7ffe0001, 0x7ffe0002]).ok, false);
    }
  });
});

describe("the in-process nfnetlink socket in a node namespace (root)", { skip: skip ?? false }, () => {
  const prefix = "m3l" + randomBytes(3).toString("hex").slice(0, 5);
  let node: NamedNodeNetns;
  before(async () => {
    node = await createNode({ netns: `${prefix}-ns` });
    await nftApply("table inet w {\n  map h4 { type ipv4_addr : mark; }\n}\n", { netns: node.netns });
  });
  after(async () => {
    await cleanupPrefix(prefix + "-");
  });

  test("the batches the writer processes get are answered alike; a refused one applies nothing", async () => {
    assert.ok(nfnlSocketAvailable(), "the build made dist/bin/membrane-nfnl-sock.node");
    const sock = new NfnlSocket(node.netns);
    const errno = (f: () => void): number | string => {
      try {
        f();
        return "ok";
      } catch (e) {
        assert.ok(e instanceof MembraneError && e.code === "NFT_APPLY_FAILED");
        return /EEXIST/.test(e.message) ? 17 : /ENOENT/.test(e.message) ? 2 : "refused";
      }
    };
    const table = Buffer.from(setElemBatch("w", [mark(1)], 0).bytes);
    table.writeUInt16LE(10 << 8, 20 + 4); // NEWTABLE in place of the NEWSETELEM: never sent
    const answers = [
      errno(() => sock.send(setElemBatch("w", [mark(1), mark(2)], 0).bytes)),
      errno(() => sock.send(setElemBatch("w", [], 0).bytes)),
      errno(() => sock.send(table)),
      errno(() => sock.send(setElemBatch("w", [mark(3), { set: "h4", add: [{ key: key(0x0a000001), value: 9 }], del: [] }], 0).bytes)), // prettier-ignore
      errno(() => sock.send(setElemBatch("w", [{ set: "h4", add: [], del: [{ key: key(0x0a0000ff) }] }], 0).bytes)), // prettier-ignore
      errno(() => sock.send(setElemBatch("w", [mark(4)], 0).bytes)),
    ];
    assert.deepEqual(answers, ["ok", "ok", "refused", 17, 2, "ok"]);
    const list = (await runRaw(["nft", "list", "map", "inet", "w", "h4"], { netns: node.netns })).stdout;
    assert.match(list.replace(/\s+/g, " "), /10\.0\.0\.1 : 0x00000001, 10\.0\.0\.2 : 0x00000002, 10\.0\.0\.4 : 0x00000004/); // prettier-ignore
    assert.doesNotMatch(list, /10\.0\.0\.3/, "a refused batch applies none of its elements");
    sock.close();
    assert.throws(() => sock.send(setElemBatch("w", [mark(5)], 0).bytes), /closed/);
  });

  test("a socket in a namespace that is gone cannot open: the writer process takes over", () => {
    const s = new NfnlSocket(`${prefix}-absent`);
    assert.equal(s.open(), false);
  });

  test("LB table: deltas through the socket; a refused delta makes the next write whole (fail closed)", async () => {
    const lb = new LbTable({ netns: node.netns, table: "m3l_lb" });
    try {
      const fr = (ip: string) => ({
        ip: "10.96.0.1",
        proto: 6 as const,
        port: 80,
        backends: [{ ip, port: 8080 }],
      });
      assert.equal((await lb.apply({ frontends: [fr("10.1.0.1")] })).mode, "full");
      const d = await lb.apply({ frontends: [fr("10.1.0.2")] });
      assert.deepEqual([d.mode, d.writer], ["delta", "nfnl-socket"]);
      // Out of band, the element the next delta deletes goes: the kernel refuses that delta whole.
      await nftApply("delete element inet m3l_lb be4 { 10.96.0.1 . tcp . 80 . 0 }\n", { netns: node.netns });
      await assert.rejects(lb.apply({ frontends: [fr("10.1.0.3")] }), /nfnetlink: ENOENT/);
      const again = await lb.apply({ frontends: [fr("10.1.0.3")] });
      assert.equal(again.mode, "full", "after a failure the table is written whole");
      const be = (await runRaw(["nft", "list", "map", "inet", "m3l_lb", "be4"], { netns: node.netns }))
        .stdout;
      assert.match(be, /10\.96\.0\.1 \. tcp \. 80 \. 0x00000000 : 10\.1\.0\.3 \. 8080/);
      // The table removed (the last Service went) and written again: its deltas still go through.
      await lb.destroy();
      assert.equal((await lb.apply({ frontends: [fr("10.1.0.4")] })).mode, "full");
      assert.deepEqual((await lb.apply({ frontends: [fr("10.1.0.5")] })).mode, "delta");
    } finally {
      await lb.destroy();
    }
  });
});
