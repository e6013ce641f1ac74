/**
 * The native source's frames and records, and the BTF reader, on hostile bytes (no root): nothing
 * throws, nothing reads past what it was given, bounds hold whatever the lengths claim.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test } from "node:test";
import { isMembraneError } from "../../../src/errors.js";
import { parseBtf } from "../../../src/runtime/source/btf.js";
import {
  ARGS_MAX,
  EXEC_SIZE,
  FRAME,
  FrameReader,
  KIND_EXEC,
  KIND_EXIT,
  KIND_FORK,
  MAX_FRAME,
  OFF,
  SMALL_SIZE,
  decodeRecords,
} from "../../../src/runtime/source/native-record.js";

function frame(type: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(payload.length, 4);
  return Buffer.concat([h, payload]);
}

function small(kind: number, pid: number, x: number, ktime: bigint): Buffer {
  const b = Buffer.alloc(SMALL_SIZE);
  b.writeUInt32LE(kind, OFF.kind);
  b.writeUInt32LE(pid, OFF.pid);
  b.writeBigUInt64LE(ktime, OFF.ktime);
  b.writeUInt32LE(x, OFF.ppidOrCode);
  return b;
}

function exec(argv: string[], cwd: string[], binary: string): Buffer {
  const b = Buffer.alloc(EXEC_SIZE);
  b.writeUInt32LE(KIND_EXEC, OFF.kind);
  b.writeUInt32LE(42, OFF.pid);
  b.writeBigUInt64LE(7n, OFF.ktime);
  b.writeUInt32LE(1, OFF.ppidOrCode);
  const args = Buffer.from(argv.map((a) => a + "\0").join(""));
  b.writeBigUInt64LE(BigInt(args.length), OFF.argBytes);
  b.writeUInt32LE(args.length, OFF.argLen);
  args.copy(b, OFF.args);
  b.writeInt32LE(binary.length + 1, OFF.filenameLen);
  b.write(binary, OFF.filename);
  let pos = 0;
  for (const c of [...cwd].reverse()) {
    b.writeUInt8(c.length, OFF.cwd + pos);
    b.write(c, OFF.cwd + pos + 1);
    pos += 1 + c.length;
  }
  b.writeUInt32LE(pos, OFF.cwdLen);
  b.writeUInt32LE(1, OFF.cwdComplete);
  b.writeUInt32LE(cwd.length, OFF.cwdComponents);
  return b;
}

describe("native event records and frames (hostile input)", () => {
  test("an exec, a fork and an exit decode, whatever the stream's chunking", () => {
    const stream = Buffer.concat([
      frame(FRAME.READY, Buffer.alloc(0)),
      frame(
        FRAME.RECORDS,
        Buffer.concat([
          small(KIND_FORK, 43, 42, 5n),
          exec(["/bin/echo", "a b", ""], ["tmp", "x y"], "/bin/echo"),
          small(KIND_EXIT, 43, 9, 9n),
        ]),
      ),
      frame(FRAME.LOST, Buffer.from([3, 0, 0, 0, 0, 0, 0, 0])),
      frame(FRAME.MARK, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])),
    ]);
    for (const step of [1, 7, 1000, stream.length]) {
      const r = new FrameReader();
      const frames = [];
      for (let i = 0; i < stream.length; i += step) frames.push(...r.push(stream.subarray(i, i + step)));
      assert.deepEqual(
        frames.map((f) => f.kind),
        ["ready", "records", "lost", "mark"],
      );
      const recs = frames[1]?.kind === "records" ? frames[1].records : [];
      assert.deepEqual(recs[0], { kind: "fork", pid: 43, ppid: 42, ktime: 5n });
      const e = recs[1];
      assert.ok(e?.kind === "exec");
      assert.deepEqual(e.argv, ["/bin/echo", "a b", ""]);
      assert.equal(e.cwd, "/tmp/x y");
      assert.equal(e.cwdComplete, true);
      assert.equal(e.binary, "/bin/echo");
      assert.equal(e.argsTruncated, false);
      assert.deepEqual(recs[2], { kind: "exit", pid: 43, code: 9, ktime: 9n });
      assert.equal(frames[2]?.kind === "lost" && frames[2].total, 3n);
      assert.equal(frames[3]?.kind === "mark" && frames[3].ktime, 256n);
    }
  });

  test("lengths that lie are bounded: args, cwd, filename; a cut argument list is truncArgs", () => {
    const b = exec(["x"], ["a"], "/b");
    b.writeUInt32LE(0xffffffff, OFF.argLen);
    b.writeBigUInt64LE(1n << 40n, OFF.argBytes);
    b.writeUInt32LE(0xffffffff, OFF.cwdLen);
    b.writeUInt32LE(99, OFF.cwdComponents);
    b.writeInt32LE(-14, OFF.filenameLen);
    const { records, malformed } = decodeRecords(b);
    assert.equal(malformed, 0);
    const e = records[0];
    assert.ok(e?.kind === "exec");
    assert.ok(e.argsTruncated);
    assert.ok(e.argv.join("\0").length <= ARGS_MAX);
    assert.equal(e.binary, "");
    assert.equal(e.cwdComplete, false, "components announced but not there");
  });

  test("an unknown kind or a record cut short is malformed, and what came before it is kept", () => {
    const fork = small(KIND_FORK, 1, 0, 1n);
    const unknown = small(99, 1, 0, 1n);
    assert.deepEqual(decodeRecords(Buffer.concat([fork, unknown])).malformed, 1);
    assert.equal(decodeRecords(Buffer.concat([fork, unknown])).records.length, 1);
    const cut = exec(["a"], [], "/a").subarray(0, 100);
    assert.deepEqual(decodeRecords(Buffer.concat([fork, cut])).malformed, 1);
  });

  test("a frame longer than MAX_FRAME or of an unknown type breaks the stream: nothing after it is read", () => {
    const r = new FrameReader();
    const h = Buffer.alloc(8);
    h.writeUInt32LE(FRAME.RECORDS, 0);
    h.writeUInt32LE(MAX_FRAME + 1, 4);
    assert.deepEqual(
      r.push(h).map((f) => f.kind),
      ["malformed"],
    );
    assert.deepEqual(r.push(frame(FRAME.READY, Buffer.alloc(0))), []);
    const r2 = new FrameReader();
    assert.deepEqual(
      r2.push(frame(77, Buffer.alloc(4))).map((f) => f.kind),
      ["malformed"],
    );
    const r3 = new FrameReader();
    assert.deepEqual(
      r3.push(frame(FRAME.MARK, Buffer.alloc(4))).map((f) => f.kind),
      ["malformed"],
      "a MARK of the wrong length",
    );
  });

  test("random bytes never throw", () => {
    for (let i = 0; i < 300; i++) {
      const r = new FrameReader();
      const junk = randomBytes(8 + (i % 5000));
      if (i % 3 === 0) {
        // a well-formed frame header around random records
        junk.writeUInt32LE(FRAME.RECORDS, 0);
        junk.writeUInt32LE(junk.length - 8, 4);
        if (junk.length >= 12) junk.writeUInt32LE(1 + (i % 3), 8);
      }
      r.push(junk);
      decodeRecords(junk);
    }
  });
});

describe("BTF reader (hostile input)", () => {
  const errs = (b: Buffer): string => {
    try {
      parseBtf(b);
      return "accepted";
    } catch (e) {
      assert.ok(isMembraneError(e), String(e));
      assert.equal(e.code, "RUNTIME_BTF_INVALID");
      return e.message;
    }
  };

  test("short, wrong magic, sections out of range: a named error", () => {
    assert.match(errs(Buffer.alloc(4)), /shorter than its header/);
    assert.match(errs(Buffer.alloc(24)), /bad magic/);
    const h = Buffer.alloc(24);
    h.writeUInt16LE(0xeb9f, 0);
    h.writeUInt32LE(24, 4);
    h.writeUInt32LE(1000, 12);
    assert.match(errs(h), /out of range/);
  });

  test("a struct with a member, found by name; a name offset out of range refused", () => {
    // strings: "\0s\0m\0"; types: int (id 1), struct s { int m at byte 8 } (id 2)
    const strs = Buffer.from("\0s\0m\0");
    const types = Buffer.alloc(16 + 24);
    types.writeUInt32LE(0, 0);
    types.writeUInt32LE(1 << 24, 4);
    types.writeUInt32LE(4, 8);
    types.writeUInt32LE(32, 12);
    types.writeUInt32LE(1, 16);
    types.writeUInt32LE((4 << 24) | 1, 20);
    types.writeUInt32LE(16, 24);
    types.writeUInt32LE(3, 28);
    types.writeUInt32LE(1, 32);
    types.writeUInt32LE(64, 36);
    const h = Buffer.alloc(24);
    h.writeUInt16LE(0xeb9f, 0);
    h.writeUInt8(1, 2);
    h.writeUInt32LE(24, 4);
    h.writeUInt32LE(0, 8);
    h.writeUInt32LE(types.length, 12);
    h.writeUInt32LE(types.length, 16);
    h.writeUInt32LE(strs.length, 20);
    const btf = parseBtf(Buffer.concat([h, types, strs]));
    assert.deepEqual(btf.offsetOf("s", "m"), { offset: 8, size: 4 });
    assert.throws(() => btf.offsetOf("s", "nope"), /no member nope/);
    assert.throws(() => btf.offsetOf("t", "m"), /no struct t/);
    types.writeUInt32LE(999, 28); // the member's name
    assert.throws(() => parseBtf(Buffer.concat([h, types, strs])).offsetOf("s", "m"), /out of range/);
    types.writeUInt32LE(999, 16); // the struct's name
    assert.match(errs(Buffer.concat([h, types, strs])), /out of range/);
  });
});
