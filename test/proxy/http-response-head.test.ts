/**
 * The upstream response head, read in place (response.ts reads the status
 * line and the three framing fields from the bytes, no string of the head):
 * the same answers as the string-based reader it replaced, on the edges of
 * the status line and of Content-Length (the table's answers are that
 * reader's; 200,000 random heads gave no difference when it was replaced).
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseResponseHead } from "../../src/proxy/http/response.js";

const CASES: [string, string][] = [
  ["HTTP/1.1 200 OK\r\nContent-Length: 11", "200 length 11"],
  ["HTTP/1.1 200\r\ncontent-length:11", "200 length 11"],
  ["HTTP/1.1 200 \r\nContent-Length:  11 ", "200 length 11"],
  ["HTTP/1.1 200 OK\r\nContent-Length: 1 1", "invalid Content-Length in the response"],
  ["HTTP/1.1 200 OK\r\nContent-Length: \u000b12", "200 length 12"],
  ["HTTP/1.1 200 OK\r\nContent-Length:  12", "200 length 12"],
  ["HTTP/1.1 200 OK\r\nContent-Length: +1", "invalid Content-Length in the response"],
  ["HTTP/1.1 200 OK\r\nContent-Length:", "invalid Content-Length in the response"],
  ["HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456", "invalid Content-Length in the response"],
  ["HTTP/1.1 200 OK\r\nContent-Length: 123456789012345", "200 length 123456789012345"],
  ["HTTP/1.10 200", "invalid status line"],
  ["HTTP/1.1 20x OK", "invalid status line"],
  ["HTTP/1.1  200", "invalid status line"],
  ["http/1.1 200", "invalid status line"],
  ["HTTP/2 200", "invalid status line"],
  ["HTTP/1.1 2000", "invalid status line"],
  [" HTTP/1.1 200", "invalid status line"],
  ["HTTP/1.1 200\tOK", "invalid status line"],
  ["HTTP/1.0 200 OK\r\nCONNECTION: Keep-Alive, foo\r\nContent-Length: 0", "200 none"],
  ["HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked", "200 chunked"],
  ["HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip", "200 close close"],
  ["HTTP/1.1 200 OK\r\nContent-Lengthx: 5", "200 close close"],
  ["HTTP/1.1 200 OK\r\nX-A : b", "malformed response header line"],
  ["HTTP/1.1 200 OK\r\n:b", "malformed response header line"],
  ["HTTP/1.1 200 OK\r\nX-A", "malformed response header line"],
];

describe("HTTP response head read in place: status line and framing fields", () => {
  for (const [head, want] of CASES) {
    test(`${JSON.stringify(head)} -> ${want}`, () => {
      const r = parseResponseHead(Buffer.from(head + "\r\n\r\n", "latin1"), "GET", 64 * 1024);
      const got =
        r.kind === "error"
          ? r.reason
          : r.kind === "incomplete"
            ? "incomplete"
            : `${r.head.status} ${r.head.framing.kind}` +
              (r.head.framing.kind === "length" ? ` ${r.head.framing.length}` : "") +
              (r.head.close ? " close" : "");
      assert.equal(got, want);
    });
  }
});
