import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseRequestHead } from "../../src/proxy/http/request.js";
import { parseResponseHead, ResponseReader } from "../../src/proxy/http/response.js";

const RESPONSES = [
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}',
  "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
  "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
  "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nclose-delimited body",
];

/** Feeds `bytes` to a reader cut at `cuts`; returns what it forwarded, joined, and the last result. */
function feed(bytes: Buffer, cuts: number[]): { out: Buffer; done: boolean; extra: number } {
  const r = new ResponseReader("GET", 64 * 1024);
  const out: Buffer[] = [];
  let done = false;
  let extra = 0;
  let at = 0;
  for (const end of [...cuts, bytes.length]) {
    const res = r.push(bytes.subarray(at, end));
    at = end;
    if ("error" in res) throw new Error(res.error);
    out.push(...res.forward);
    done = res.done;
    extra = res.extra;
    if (done) break;
  }
  if (!done) done = r.endOfInput();
  return { out: Buffer.concat(out), done, extra };
}

describe("HTTP response reader: what is forwarded is exactly what arrived, however it is cut", () => {
  for (const text of RESPONSES) {
    test(`every cut of ${JSON.stringify(text.slice(0, 24))}...`, () => {
      const bytes = Buffer.from(text, "latin1");
      for (let i = 1; i < bytes.length; i++) {
        for (const cuts of [[i], [Math.floor(i / 2), i]]) {
          const r = feed(
            bytes,
            [...new Set(cuts)].filter((c) => c > 0),
          );
          assert.equal(r.out.toString("latin1"), text, `cut at ${cuts.join(",")}`);
          assert.ok(r.done, `cut at ${cuts.join(",")}: done`);
        }
      }
    });
  }

  test("a response read whole is forwarded as one slice of the read, not a copy", () => {
    const read = Buffer.from(RESPONSES[0] as string, "latin1");
    const res = new ResponseReader("GET", 64 * 1024).push(read);
    assert.ok(!("error" in res));
    assert.equal(res.forward.length, 1);
    const only = res.forward[0] as Buffer;
    assert.equal(only.buffer, read.buffer);
    assert.equal(only.length, read.length);
  });

  test("bytes after the end of the response are not forwarded, and are counted", () => {
    const read = Buffer.from(`${RESPONSES[0] as string}HTTP/1.1 200 OK\r\n`, "latin1");
    const res = new ResponseReader("GET", 64 * 1024).push(read);
    assert.ok(!("error" in res));
    assert.equal(Buffer.concat(res.forward).toString("latin1"), RESPONSES[0]);
    assert.equal(res.extra, "HTTP/1.1 200 OK\r\n".length);
  });

  test("the one-pass head check still refuses NUL, bare LF and bare CR", () => {
    for (const head of [
      "HTTP/1.1 200 OK\r\nX-A: a\0b\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 0\r\r\n\r\n",
    ]) {
      const r = parseResponseHead(Buffer.from(head, "latin1"), "GET", 64 * 1024);
      assert.equal(r.kind, "error", JSON.stringify(head));
    }
  });

  test("framing fields are found whatever their case; a space before the colon is refused", () => {
    const r = parseResponseHead(Buffer.from("HTTP/1.1 200 OK\r\ncOnTeNt-LeNgTh: 5\r\n\r\n"), "GET", 65536);
    assert.ok(r.kind === "ok" && r.head.framing.kind === "length" && r.head.framing.length === 5);
    const bad = parseResponseHead(Buffer.from("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n"), "GET", 65536);
    assert.equal(bad.kind, "error");
  });
});

describe("HTTP request parser: field names that are also Object.prototype's", () => {
  test("constructor, __proto__, toString and hasOwnProperty are ordinary fields, forwarded as received", () => {
    const names = ["constructor", "__proto__", "toString", "hasOwnProperty"];
    const head = `GET / HTTP/1.1\r\nHost: svc\r\n${names.map((n) => `${n}: x`).join("\r\n")}\r\n\r\n`;
    const r = parseRequestHead(Buffer.from(head, "latin1"), { maxHeadBytes: 65536, maxHeaders: 100 });
    assert.equal(r.kind, "ok");
    if (r.kind !== "ok") return;
    assert.deepEqual(
      r.head.headers.map((h) => h.name),
      ["Host", ...names],
    );
    assert.equal(r.head.framing.kind, "none");
  });

  test("two Content-Length fields in different case are still two (refused)", () => {
    const head = "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n";
    const r = parseRequestHead(Buffer.from(head, "latin1"), { maxHeadBytes: 65536, maxHeaders: 100 });
    assert.equal(r.kind, "error");
  });
});
