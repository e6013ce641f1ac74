import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeFrame, FrameDecoder, FRAME_DATAGRAM, FRAME_STATUS } from "../../src/observe/frames.js";
import { configRequests, NFULNL_MSG_PACKET, parseNetlink } from "../../src/observe/nflog-msg.js";
import { ipv4, tcpHeader } from "./fixtures.js";

function attr(type: number, value: Buffer): Buffer {
  const b = Buffer.alloc((4 + value.length + 3) & ~3);
  b.writeUInt16LE(4 + value.length, 0);
  b.writeUInt16LE(type, 2);
  value.copy(b, 4);
  return b;
}
const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v, 0);
  return b;
};

/** A NFULNL_MSG_PACKET as the kernel sends it. */
export function packetMessage(o: {
  prefix: string;
  packet: Buffer;
  mark?: number;
  seq?: number;
  tsSec?: number;
}): Buffer {
  const hdr = Buffer.from([0x08, 0x00, 1, 0]); // IPv4 ethertype, hook 1
  const attrs = [attr(1, hdr)];
  if (o.mark !== undefined) attrs.push(attr(2, be32(o.mark)));
  if (o.tsSec !== undefined) {
    const ts = Buffer.alloc(16);
    ts.writeBigUInt64BE(BigInt(o.tsSec), 0);
    ts.writeBigUInt64BE(250000n, 8);
    attrs.push(attr(3, ts));
  }
  attrs.push(attr(4, be32(7)), attr(9, o.packet), attr(10, Buffer.from(o.prefix + "\0")));
  if (o.seq !== undefined) attrs.push(attr(12, be32(o.seq)));
  const body = Buffer.concat([Buffer.from([2, 0, 0, 5]), ...attrs]);
  const h = Buffer.alloc(16);
  h.writeUInt32LE(16 + body.length, 0);
  h.writeUInt16LE(NFULNL_MSG_PACKET, 4);
  return Buffer.concat([h, body]);
}

describe("NFLOG netlink messages", () => {
  test("the bind request carries group 5 big-endian and command 1, asking for an ACK", () => {
    const [bind] = configRequests(5, 100);
    assert.equal(
      bind?.toString("hex"),
      // len 28, type 0x0401, flags REQUEST|ACK, seq 100, pid 0 | nfgenmsg AF_UNSPEC v0 res_id 5 | attr len 5 type 1 cmd 1 + pad
      "1c000000" + "0104" + "0500" + "64000000" + "00000000" + "00000005" + "0500" + "0100" + "01000000",
    );
  });

  test("the mode request sets copy range, packet mode, buffer, timeout, batch size and sequence numbers", () => {
    const [, mode] = configRequests(5, 100, {
      copyRange: 128,
      qthreshold: 8,
      flushTimeoutMs: 20,
      nlbufsiz: 32768,
    });
    assert.equal(
      mode?.subarray(20).toString("hex"),
      "0a000200" +
        "0000008002000000" + // mode: range 128, COPY_PACKET, pad
        "08000300" +
        "00008000" + // nlbufsiz 32768
        "08000400" +
        "00000002" + // timeout 2 (x10 ms)
        "08000500" +
        "00000008" + // qthresh 8
        "06000600" +
        "00010000", // flags F_SEQ
    );
    assert.equal(mode?.readUInt32LE(8), 101, "second request has the next seq");
  });

  test("a packet message yields prefix, packet, mark, interface, seq and kernel timestamp", () => {
    const pkt = ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(1, 80, 2));
    const p = parseNetlink(
      packetMessage({ prefix: "mbr:d:e12:in:r7", packet: pkt, mark: 257, seq: 9, tsSec: 1700000000 }),
      5,
    );
    assert.equal(p.invalid, 0);
    assert.equal(p.events.length, 1);
    const e = p.events[0];
    assert.equal(e?.prefix, "mbr:d:e12:in:r7");
    assert.deepEqual(e?.packet, pkt);
    assert.equal(e?.mark, 257);
    assert.equal(e?.seq, 9);
    assert.equal(e?.indev, 7);
    assert.equal(e?.hwProtocol, 0x0800);
    assert.equal(e?.timestampMs, 1700000000250);
  });

  test("without a kernel timestamp the receive time is used", () => {
    const p = parseNetlink(packetMessage({ prefix: "x", packet: Buffer.from([0x45]) }), 1234.5);
    assert.equal(p.events[0]?.timestampMs, 1234.5);
  });

  test("several messages in one datagram all come out, in order", () => {
    const d = Buffer.concat(
      [1, 2, 3].map((seq) => packetMessage({ prefix: `p${seq}`, packet: Buffer.from([0x45]), seq })),
    );
    assert.deepEqual(
      parseNetlink(d, 0).events.map((e) => e.seq),
      [1, 2, 3],
    );
  });

  test("an ACK and an error answer are reported with their request seq and errno", () => {
    const ack = Buffer.alloc(36);
    ack.writeUInt32LE(36, 0);
    ack.writeUInt16LE(2, 4);
    ack.writeInt32LE(-16, 16); // EBUSY
    ack.writeUInt32LE(101, 28);
    assert.deepEqual(parseNetlink(ack, 0).acks, [{ seq: 101, errno: 16 }]);
  });

  test("truncated datagrams are counted as invalid, never thrown", () => {
    const full = packetMessage({
      prefix: "mbr:d:e1:in:def",
      packet: ipv4("1.1.1.1", "2.2.2.2", 17, [0, 1, 0, 2]),
      seq: 1,
    });
    for (let n = 0; n < full.length; n++) {
      const p = parseNetlink(full.subarray(0, n), 0);
      assert.equal(p.events.length, 0, `cut at ${n}`);
      assert.equal(p.invalid, n >= 16 ? 1 : 0, `cut at ${n}`);
    }
  });

  test("an attribute whose length runs past its message invalidates only that message", () => {
    const bad = packetMessage({ prefix: "a", packet: Buffer.from([0x45]) });
    bad.writeUInt16LE(200, 20); // first attribute claims 200 bytes
    const good = packetMessage({ prefix: "b", packet: Buffer.from([0x45]) });
    const p = parseNetlink(Buffer.concat([bad, good]), 0);
    assert.deepEqual(
      p.events.map((e) => e.prefix),
      ["b"],
    );
    assert.equal(p.invalid, 1);
  });
});

describe("child frames", () => {
  test("frames split across arbitrary chunks reassemble in order", () => {
    const frames = [
      encodeFrame(FRAME_STATUS, Buffer.from('{"ready":true}')),
      encodeFrame(FRAME_DATAGRAM, Buffer.alloc(3000, 7)),
      encodeFrame(FRAME_DATAGRAM, Buffer.alloc(0)),
    ];
    const all = Buffer.concat(frames);
    for (const size of [1, 2, 5, 7, 1000, all.length]) {
      const d = new FrameDecoder();
      const got = [];
      for (let o = 0; o < all.length; o += size) got.push(...d.push(all.subarray(o, o + size)));
      assert.deepEqual(
        got.map((f) => [f.kind, f.body.length]),
        [
          [FRAME_STATUS, 14],
          [FRAME_DATAGRAM, 3000],
          [FRAME_DATAGRAM, 0],
        ],
        `chunks of ${size}`,
      );
    }
  });

  test("a corrupt frame length is an error, not an unbounded buffer", () => {
    const b = Buffer.alloc(5);
    b.writeUInt8(1, 0);
    b.writeUInt32LE(0xffffffff, 1);
    assert.throws(() => new FrameDecoder().push(b), /frame of 4294967295 bytes exceeds/);
  });
});
