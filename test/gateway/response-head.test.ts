/**
 * The backend's response head as the gateway's client gets it (response-head.ts): the
 * shortcut that hands back the head as it is must give exactly the bytes the full rewrite
 * writes, on seeded random heads built from the cases that tell them apart (HTTP/1.0,
 * Connection and Keep-Alive in any case, no space or two after the colon, values that trim()
 * changes, NBSP, empty values), and take the shortcut on the common head.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { rewriteFields, rewriteHead } from "../../src/gateway/response-head.js";

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const STATUS = [
  "HTTP/1.1 200 OK",
  "HTTP/1.0 200 OK",
  "HTTP/1.1 204",
  "HTTP/1.1 404 Not Found",
  "HTTP/1.0 304",
];
const NAMES = ["Content-Type", "content-length", "Connection", "CONNECTION", "keep-alive", "Keep-Alivex", "Connectio", "X-\xe9", "Server", "k\xc9ep-alive"]; // prettier-ignore
const SEPARATORS = [": ", ":", ":  ", ":\t", ": \t"];
const VALUES = ["text/plain", "", " ", "a b", "v ", "v\t", "\xa0v", "v\xa0", "\x0bv", "v\x0c", "close", "keep-alive, x", "\xe9t\xe9", "1"]; // prettier-ignore

function randomHead(r: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const lines = [pick(STATUS)];
  const n = Math.floor(r() * 5);
  for (let i = 0; i < n; i++) lines.push(pick(NAMES) + pick(SEPARATORS) + pick(VALUES));
  return lines.join("\r\n") + "\r\n\r\n";
}

describe("gateway response head: the shortcut agrees with the rewrite", () => {
  test("5,000 seeded random heads, kept alive, no modifiers: the same bytes", () => {
    const r = prng(17);
    let shortcuts = 0;
    for (let i = 0; i < 5000; i++) {
      const raw = Buffer.from(randomHead(r), "latin1");
      const got = rewriteHead(raw, [], true);
      const want = rewriteFields(raw, [], true);
      assert.equal(got.toString("latin1"), want.toString("latin1"), JSON.stringify(raw.toString("latin1")));
      if (got === raw) shortcuts++;
    }
    // The generator makes both kinds: the comparison above covered the shortcut and the rewrite.
    assert.ok(shortcuts > 200 && shortcuts < 4800, `${shortcuts} shortcuts`);
  });

  const cases: { name: string; head: string; same: boolean }[] = [
    { name: "the common head is handed back as it is", head: "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 2\r\n\r\n", same: true }, // prettier-ignore
    { name: "no fields", head: "HTTP/1.1 204 No Content\r\n\r\n", same: true },
    { name: "an empty value after one space", head: "HTTP/1.1 200 OK\r\nX-E: \r\n\r\n", same: true },
    { name: "HTTP/1.0 is rewritten", head: "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", same: false },
    { name: "Connection is dropped", head: "HTTP/1.1 200 OK\r\nCoNNection: keep-alive\r\n\r\n", same: false },
    { name: "Keep-Alive is dropped", head: "HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\n\r\n", same: false },
    { name: "no space after the colon", head: "HTTP/1.1 200 OK\r\nX-A:b\r\n\r\n", same: false },
    { name: "a value ending in NBSP", head: "HTTP/1.1 200 OK\r\nX-A: b\xa0\r\n\r\n", same: false },
  ];
  for (const c of cases)
    test(c.name, () => {
      const raw = Buffer.from(c.head, "latin1");
      const got = rewriteHead(raw, [], true);
      assert.equal(got === raw, c.same);
      assert.equal(got.toString("latin1"), rewriteFields(raw, [], true).toString("latin1"));
    });

  test("modifiers or a closing connection always take the rewrite", () => {
    const raw = Buffer.from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", "latin1");
    assert.equal(
      rewriteHead(raw, [], false).toString("latin1"),
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\n\r\n",
    );
    const mod = { set: [], add: [{ name: "X-Added", value: "1" }], remove: [] };
    assert.equal(
      rewriteHead(raw, [mod], true).toString("latin1"),
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Added: 1\r\n\r\n",
    );
  });
});
