/**
 * The syscall guard loader's frames (guard-frames.ts) read as if hostile: split anywhere, bounded,
 * whole records only, and nothing more after a frame that breaks the stream.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { GuardFrameReader, type GuardFrame } from "../../../src/runtime/enforce/guard-frames.js";

const SIZE = 16;

function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

const lost = (n: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return frame(4, b);
};

/** What the reader makes of `bytes` fed in pieces of `step` bytes; records as their first byte. */
function read(bytes: Buffer, step: number, maxRecords?: number): unknown[] {
  const r = new GuardFrameReader(SIZE, maxRecords);
  const out: unknown[] = [];
  const keep = (f: GuardFrame): unknown =>
    f.kind === "records"
      ? { kind: "records", count: f.count, first: [...Array(f.count).keys()].map((i) => f.records[i * SIZE]) }
      : f;
  for (let at = 0; at < bytes.length; at += step)
    out.push(...r.push(bytes.subarray(at, Math.min(bytes.length, at + step))).map(keep));
  return out;
}

describe("syscall guard frames (hostile input)", () => {
  const records = Buffer.concat([Buffer.alloc(SIZE, 7), Buffer.alloc(SIZE, 9)]);
  const stream = Buffer.concat([
    frame(1, Buffer.alloc(0)),
    frame(3, records),
    lost(5n),
    frame(2, Buffer.from("load:sys_enter 13 denied")),
  ]);
  const expected = [
    { kind: "ready" },
    { kind: "records", count: 2, first: [7, 9] },
    { kind: "lost", total: 5 },
    { kind: "error", text: "load:sys_enter 13 denied" },
  ];

  for (const step of [1, 3, 8, 17, stream.length])
    test(`the same frames whatever the read sizes (${step} bytes at a time)`, () => {
      assert.deepEqual(read(stream, step), expected);
    });

  const cases: { name: string; bytes: Buffer; why: RegExp }[] = [
    { name: "records that are not whole", bytes: frame(3, Buffer.alloc(SIZE + 1)), why: /unknown frame/ },
    { name: "an empty records frame", bytes: frame(3, Buffer.alloc(0)), why: /unknown frame/ },
    { name: "a frame type we never write", bytes: frame(9, Buffer.alloc(4)), why: /type 9/ },
    { name: "a lost counter of the wrong size", bytes: frame(4, Buffer.alloc(4)), why: /unknown frame/ },
    { name: "READY with a payload", bytes: frame(1, Buffer.alloc(1)), why: /unknown frame/ },
  ];
  for (const c of cases)
    test(`malformed: ${c.name}; nothing after it is read`, () => {
      const out = read(Buffer.concat([c.bytes, frame(1, Buffer.alloc(0))]), 5);
      assert.equal(out.length, 1);
      assert.equal((out[0] as { kind: string }).kind, "malformed");
      assert.match((out[0] as { why: string }).why, c.why);
    });

  test("a length over the bound is refused from its header, before its bytes arrive", () => {
    const h = Buffer.alloc(8);
    h.writeUInt32LE(3, 0);
    h.writeUInt32LE(SIZE * 5, 4);
    const out = read(h, 8, 4);
    assert.deepEqual(out, [{ kind: "malformed", why: `a frame of ${SIZE * 5} bytes (at most ${SIZE * 4})` }]);
  });

  test("an absurd lost total is clamped, not turned into an imprecise number", () => {
    assert.deepEqual(read(lost(2n ** 64n - 1n), 64), [{ kind: "lost", total: Number.MAX_SAFE_INTEGER }]);
  });
});
