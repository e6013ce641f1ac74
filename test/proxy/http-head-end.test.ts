/**
 * headEnd (src/proxy/http/request.ts), the one pass that finds where a head ends and refuses
 * NUL, bare LF and bare CR before it, against the two-step reference it replaced (indexOf of
 * CRLF CRLF, then a check of every byte up to it), on seeded random heads made of the bytes
 * that matter.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { BARE_CR, BARE_LF, headEnd, NUL } from "../../src/proxy/http/request.js";

/** The former parseRequestHead's first steps: the end, or the first refused byte before it. */
function reference(buf: Buffer): number {
  const end = buf.indexOf("\r\n\r\n", 0, "latin1");
  const scanTo = end < 0 ? buf.length : end + 4;
  for (let i = 0; i < scanTo; i++) {
    const c = buf[i];
    if (c === 0) return NUL;
    if (c === 0x0a && (i === 0 || buf[i - 1] !== 0x0d)) return BARE_LF;
    if (c === 0x0d && i + 1 < scanTo && buf[i + 1] !== 0x0a) return BARE_CR;
  }
  return end;
}

/** xorshift32: the same cases on every run. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

describe("headEnd: one pass, as indexOf then a check", () => {
  test("fixed cases", () => {
    const cases: [string, number][] = [
      ["GET / HTTP/1.1\r\nHost: a\r\n\r\n", 23],
      ["GET / HTTP/1.1\r\nHost: a\r\n\r", -1],
      ["GET / HTTP/1.1\r\nHost: a\r\n", -1],
      ["GET / HTTP/1.1\r\n\r\nbody\n", 14],
      ["\r\n\r\n", 0],
      ["\n", BARE_LF],
      ["GET / HTTP/1.1\nHost: a\r\n\r\n", BARE_LF],
      ["GET / HTTP/1.1\r\rHost: a\r\n\r\n", BARE_CR],
      ["GET /\0 HTTP/1.1\r\n\r\n", NUL],
      ["GET / HTTP/1.1\r\n\r\n\0", 14],
      ["GET / HTTP/1.1\r", -1],
    ];
    for (const [s, want] of cases) {
      assert.equal(headEnd(Buffer.from(s, "latin1")), want, JSON.stringify(s));
      assert.equal(reference(Buffer.from(s, "latin1")), want, `reference: ${JSON.stringify(s)}`);
    }
  });

  test("20,000 seeded random heads agree with the reference", () => {
    const next = rng(1717);
    // Pieces weighted so that every answer comes often: CRLF (two make an end), a letter, stray CR/LF/NUL.
    const pieces: [string, number][] = [
      ["\r\n", 0.45],
      ["a", 0.4],
      ["\r", 0.05],
      ["\n", 0.05],
      ["\0", 0.05],
    ];
    const seen = new Map<string, number>();
    for (let n = 0; n < 20_000; n++) {
      let s = "";
      const count = Math.floor(next() * 12);
      for (let i = 0; i < count; i++) {
        let r = next();
        s += pieces.find(([, w]) => (r -= w) < 0)?.[0] ?? "a";
      }
      const b = Buffer.from(s, "latin1");
      const got = headEnd(b);
      assert.equal(got, reference(b), JSON.stringify(b.toString("latin1")));
      const kind = got >= 0 ? "end" : String(got);
      seen.set(kind, (seen.get(kind) ?? 0) + 1);
    }
    // The cases reach every answer often, or the comparison proves little.
    for (const kind of ["end", "-1", String(BARE_LF), String(BARE_CR), String(NUL)]) {
      assert.ok(
        (seen.get(kind) ?? 0) >= 200,
        `${kind}: ${seen.get(kind) ?? 0} cases (${JSON.stringify([...seen])})`,
      );
    }
  });
});
