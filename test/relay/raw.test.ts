/**
 * The relay reads the time and kind of an agent's GetFlowsResponse from its bytes (raw.ts):
 * the same answer as a full decode on real records; hostile bytes refused with the offset,
 * never read past the end.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fromJson, toBinary } from "@bufbuild/protobuf";
import { hubbleRecord } from "../../src/observe/hubble/json.js";
import { hubbleSchema } from "../../src/observe/hubble/schema.js";
import { nodeStatusBytes } from "../../src/relay/events.js";
import { RawDecodeError, scanResponse } from "../../src/relay/raw.js";
import { SAMPLES, NAMES } from "../observe/samples.js";

function bytesOf(j: Record<string, unknown>): Uint8Array {
  const s = hubbleSchema();
  return toBinary(s.GetFlowsResponse, fromJson(s.GetFlowsResponse, j as never, { registry: s.registry }));
}

describe("scanResponse", () => {
  test("reads time and kind of every sample flow, a lost_events record and a node_status event", () => {
    for (const n of NAMES) {
      const f = SAMPLES[n]!;
      const r = scanResponse(bytesOf(hubbleRecord({ flow: f, node_name: "n1", time: f.time })));
      assert.equal(r.kind, "flow", n);
      assert.equal(r.timeMs, Date.parse(f.time), n);
    }
    const lost = scanResponse(
      bytesOf({
        lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: "3" },
        time: "2026-01-01T00:00:01.5Z",
      }),
    );
    assert.deepEqual([lost.kind, lost.timeMs], ["lost_events", Date.parse("2026-01-01T00:00:01.5Z")]);
    const ev = scanResponse(nodeStatusBytes("unavailable", ["n2"], "down", 1234.5));
    assert.deepEqual([ev.kind, ev.timeMs], ["node_status", 1234.5]);
    const sub = scanResponse(bytesOf({ time: "2026-01-01T00:00:00.000000001Z" }));
    assert.equal(sub.kind, "none");
    assert.equal(sub.timeMs, Date.parse("2026-01-01T00:00:00Z") + 1e-6);
    assert.ok(Number.isNaN(scanResponse(new Uint8Array()).timeMs));
  });

  const hostile: { name: string; bytes: number[] }[] = [
    { name: "a truncated varint tag", bytes: [0x80] },
    { name: "a varint of 11 bytes", bytes: [0x08, ...new Array<number>(10).fill(0xff), 0x01] },
    { name: "a length past the end", bytes: [0x0a, 0x05, 0x01] },
    { name: "a huge length", bytes: [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f] },
    { name: "a group (wire type 3)", bytes: [0x0b] },
    { name: "wire type 7", bytes: [0x0f] },
    { name: "field number 0", bytes: [0x02, 0x00] },
    { name: "a fixed64 cut short", bytes: [0x09, 1, 2, 3] },
    { name: "a time whose seconds run past its length", bytes: [0xca, 0x3e, 0x02, 0x08, 0x80, 0x01] },
    { name: "a negative time", bytes: [0xca, 0x3e, 0x0b, 0x08, ...new Array<number>(9).fill(0xff), 0x01] },
    { name: "nanos over a second", bytes: [0xca, 0x3e, 0x05, 0x10, 0x80, 0xa8, 0xd6, 0xb9, 0x07] },
  ];
  for (const h of hostile)
    test(`refuses ${h.name}, naming the offset`, () => {
      assert.throws(
        () => scanResponse(Uint8Array.from(h.bytes)),
        (e: unknown) => {
          assert.ok(e instanceof RawDecodeError);
          assert.match(e.message, /malformed GetFlowsResponse at byte \d+/);
          return true;
        },
      );
    });

  test("random bytes: refused or read, never a crash of another kind (2,000 inputs)", () => {
    let seed = 42;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
    const base = bytesOf(hubbleRecord({ flow: SAMPLES[NAMES[0]!]!, time: SAMPLES[NAMES[0]!]!.time }));
    for (let i = 0; i < 2000; i++) {
      const b = Uint8Array.from(i % 2 === 0 ? Array.from({ length: rnd() % 64 }, rnd) : base);
      if (i % 2 === 1) for (let k = 0; k < 3; k++) b[rnd() % b.length] = rnd();
      try {
        const r = scanResponse(b);
        assert.ok(["flow", "node_status", "lost_events", "none"].includes(r.kind));
      } catch (e) {
        assert.ok(e instanceof RawDecodeError, String(e));
      }
    }
  });
});
