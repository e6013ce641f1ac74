/**
 * The NFQUEUE wire (abi/nfqueue-wire.ts) and the queued packet's addresses (auth/packet.ts):
 * messages as the kernel lays them out are read back; hostile bytes never throw.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { configRequests, NFQNL_MSG_PACKET, parseQueue, verdictMessage } from "../../src/abi/nfqueue-wire.js";
import { packetAddresses } from "../../src/auth/packet.js";

function attr(type: number, v: Buffer): Buffer {
  const b = Buffer.alloc((4 + v.length + 3) & ~3);
  b.writeUInt16LE(4 + v.length, 0);
  b.writeUInt16LE(type, 2);
  v.copy(b, 4);
  return b;
}

function packetMsg(queue: number, id: number, mark: number, payload: Buffer): Buffer {
  const hdr = Buffer.alloc(7);
  hdr.writeUInt32BE(id, 0);
  hdr.writeUInt16BE(0x0800, 4);
  const m = Buffer.alloc(4);
  m.writeUInt32BE(mark, 0);
  const body = Buffer.concat([attr(1, hdr), attr(3, m), attr(10, payload)]);
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + body.length, 0);
  h.writeUInt16LE(NFQNL_MSG_PACKET, 4);
  h.writeUInt16BE(queue, 18);
  return Buffer.concat([h, body]);
}

const ipv4 = (src: number[], dst: number[]): Buffer => {
  const b = Buffer.alloc(20);
  b[0] = 0x45;
  b.set(src, 12);
  b.set(dst, 16);
  return b;
};

describe("nfqueue wire", () => {
  test("a queued packet is read back: queue, id, mark, payload and its addresses", () => {
    const pkt = ipv4([10, 0, 1, 20], [10, 0, 1, 10]);
    const two = Buffer.concat([packetMsg(7189, 42, 0x08000101, pkt), packetMsg(7189, 43, 5, pkt)]);
    const q = parseQueue(two);
    assert.equal(q.invalid, 0);
    assert.deepEqual(q.packets.map((p) => [p.queue, p.id, p.mark]), [[7189, 42, 0x08000101], [7189, 43, 5]]); // prettier-ignore
    assert.deepEqual(packetAddresses(q.packets[0]?.payload ?? Buffer.alloc(0)), { src: "10.0.1.20", dst: "10.0.1.10", family: 4 }); // prettier-ignore
    const v6 = Buffer.alloc(40);
    v6[0] = 0x60;
    Buffer.from("fd000000000000000000000000000014", "hex").copy(v6, 8);
    Buffer.from("fd000000000000010000000000000000", "hex").copy(v6, 24);
    assert.deepEqual(packetAddresses(v6), { src: "fd00::14", dst: "fd00:0:0:1::", family: 6 });
  });

  test("config and verdict messages: queue number big-endian, the verdict header and mark", () => {
    const [bind, params, maxlen] = configRequests(7189, 1, { copyRange: 128, maxLen: 64 });
    for (const m of [bind, params, maxlen]) assert.equal(m?.readUInt16BE(18), 7189);
    assert.equal(maxlen?.readUInt32BE(24), 64);
    const v = verdictMessage(7189, 9, 42, 1, 0x04000101);
    assert.equal(v.readUInt32LE(0), v.length);
    assert.equal(v.readUInt32BE(24), 1); // NF_ACCEPT
    assert.equal(v.readUInt32BE(28), 42);
    assert.equal(v.readUInt32BE(36), 0x04000101);
  });

  test("hostile bytes: truncated, lying lengths, random datagrams never throw; short headers have no addresses", () => {
    const good = packetMsg(1, 1, 1, ipv4([1, 2, 3, 4], [5, 6, 7, 8]));
    for (let cut = 0; cut < good.length; cut++) assert.doesNotThrow(() => parseQueue(good.subarray(0, cut)));
    const liar = Buffer.from(good);
    liar.writeUInt16LE(0xfff0, 20); // an attribute longer than the message
    assert.equal(parseQueue(liar).packets.length, 0);
    for (let i = 0; i < 2000; i++) {
      const b = randomBytes(1 + (i % 200));
      if (i % 2 === 0 && b.length >= 20) b.writeUInt32LE(b.length, 0);
      assert.doesNotThrow(() => parseQueue(b));
      assert.doesNotThrow(() => packetAddresses(b));
    }
    assert.equal(packetAddresses(Buffer.from([0x45, 0, 0])), undefined);
    assert.equal(packetAddresses(Buffer.alloc(39, 0x60)), undefined);
    assert.equal(packetAddresses(Buffer.alloc(0)), undefined);
  });
});
