/**
 * The fast full-match of HTTP rule patterns (policy/l7/exact-match.ts) says
 * exactly what RE2 says: checked on a table of patterns against crafted and
 * random inputs; patterns outside the linear-time subset stay with RE2.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { RE2JS } from "re2js";
import { compileExact } from "../../../src/policy/l7/exact-match.js";

const PATTERNS = [
  "GET",
  "POST",
  "/healthz",
  "/api/items/[0-9]+",
  "/public/.*",
  "/v1/request-landing",
  "/a\\.b",
  "/x/[a-z_-]?",
  "/x/[^/]+",
  "/x/[A-Fa-f0-9]*/end",
  "/files/.+\\.json",
  "GET|POST",
  "/(a|b)/c",
  "/a*b*",
  "/x{2,3}",
  "(?i)/admin",
  "^/anchored$",
  "/\\d+",
  "/[[:alpha:]]+",
  ".*",
  "",
];

const INPUTS = [
  "",
  "GET",
  "get",
  "POST",
  "/healthz",
  "/healthz/",
  "/api/items/1",
  "/api/items/",
  "/api/items/12a",
  "/api/items/123456789",
  "/public/",
  "/public/a/b/c",
  "/public/\r",
  "/public/\n",
  "/public/é",
  "/public/\u2028",
  "/v1/request-landing",
  "/a.b",
  "/axb",
  "/x/",
  "/x/a",
  "/x/-",
  "/x/ab",
  "/x/a/b",
  "/x/0aF/end",
  "/files/a.json",
  "/files/.json",
  "/a/c",
  "/ab",
  "/aab",
  "/xx",
  "/ADMIN",
  "/anchored",
  "/123",
  "/abc",
  "/api/items/" + "1".repeat(65536),
];

function randomInput(seed: number): string {
  const alphabet = "/.aAbx019-_?%\r\n é";
  let s = "";
  let x = seed;
  const n = (seed * 7) % 24;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) % 2147483648;
    s += alphabet[x % alphabet.length];
  }
  return s;
}

describe("policy l7: fast full match of HTTP rule patterns", () => {
  test("says what RE2 says, pattern by pattern, on crafted and random inputs (ASCII, controls, non-ASCII, 64 KiB)", () => {
    for (const p of PATTERNS) {
      const re2 = RE2JS.compile(p);
      const fast = compileExact(p);
      const inputs = [...INPUTS, ...Array.from({ length: 300 }, (_, i) => randomInput(i + 1))];
      for (const x of inputs) {
        assert.equal(
          fast.testExact(x),
          re2.testExact(x),
          `pattern ${JSON.stringify(p)} on ${JSON.stringify(x.slice(0, 40))}`,
        );
      }
    }
  });
  test("patterns outside the linear-time subset (groups, alternation, two quantifiers, counted repetition, flags, anchors) stay with RE2", () => {
    for (const p of [
      "GET|POST",
      "/(a|b)/c",
      "/a*b*",
      "/x{2,3}",
      "(?i)/admin",
      "^/anchored$",
      "/\\d+",
      "/[[:alpha:]]+",
    ]) {
      assert.ok(compileExact(p) instanceof RE2JS, p);
    }
    for (const p of ["GET", "/api/items/[0-9]+", "/public/.*", "/x/[^/]+"]) {
      assert.ok(!(compileExact(p) instanceof RE2JS), p);
    }
  });
  test("a pattern RE2 refuses is refused alike", () => {
    assert.throws(() => compileExact("(?=x)"));
    assert.throws(() => compileExact("[z-a]"));
  });
});
