/**
 * Where a backend response ends (response-body.ts, after forward-h1.ts parsed the head) must
 * agree with the proxy's ResponseReader, which the gateway used before: seeded random
 * responses (Content-Length, chunked with extensions and trailers, close-delimited, HEAD and
 * 204 without a body, bad chunking), followed by stray bytes, cut into random reads. Both must
 * pass on the same bytes, end at the same byte, or fail on the same response.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { parseResponseHead, ResponseReader } from "../../src/proxy/http/response.js";
import { ResponseBody } from "../../src/gateway/response-body.js";

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

interface Outcome {
  readonly forwarded: string;
  readonly done: boolean;
  readonly extra: number;
  readonly error: boolean;
  /** After the backend's FIN. */
  readonly completeAtEnd: boolean;
}

const MAX = 65536;

/** The proxy's reader over the reads (what forward-h1.ts did before). */
function byReader(method: string, reads: readonly Buffer[]): Outcome {
  const r = new ResponseReader(method, MAX);
  let forwarded = "";
  for (const d of reads) {
    const res = r.push(d);
    if ("error" in res) return { forwarded, done: false, extra: 0, error: true, completeAtEnd: false };
    forwarded += Buffer.concat(res.forward).toString("latin1");
    if (res.done) return { forwarded, done: true, extra: res.extra, error: false, completeAtEnd: true };
  }
  const completeAtEnd = r.endOfInput();
  return { forwarded, done: false, extra: 0, error: false, completeAtEnd };
}

/** The head parsed once, then ResponseBody (what forward-h1.ts does now). */
function byBody(method: string, reads: readonly Buffer[]): Outcome {
  let pending = Buffer.alloc(0);
  let body: ResponseBody | undefined;
  let forwarded = "";
  for (const d of reads) {
    let at = 0;
    let read = d;
    if (!body) {
      pending = Buffer.concat([pending, d]);
      const h = parseResponseHead(pending, method, MAX);
      if (h.kind === "incomplete") continue;
      if (h.kind === "error") return { forwarded, done: false, extra: 0, error: true, completeAtEnd: false };
      body = new ResponseBody(h.head.framing);
      read = pending;
      at = h.length;
    }
    const n = body.take(read, at);
    if (typeof n !== "number") return { forwarded, done: false, extra: 0, error: true, completeAtEnd: false };
    // A read goes out whole or not at all (forward-h1.ts sends the head with the body's first bytes).
    forwarded += read.toString("latin1", 0, at + n);
    if (body.done)
      return { forwarded, done: true, extra: read.length - at - n, error: false, completeAtEnd: true };
  }
  const completeAtEnd = body?.endOfInput() ?? false;
  return { forwarded, done: false, extra: 0, error: false, completeAtEnd };
}

function randomResponse(r: () => number): { method: string; bytes: string } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const body = "x".repeat(Math.floor(r() * 40));
  const method = r() < 0.1 ? "HEAD" : "GET";
  const kind = pick(["length", "chunked", "close", "204", "bad-chunk", "length0"] as const);
  const stray = pick(["", "", "HTTP/1.1 200 OK\r\n", "junk"]);
  switch (kind) {
    case "length":
      return { method, bytes: `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}${stray}` };
    case "length0":
      return { method, bytes: `HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n${stray}` };
    case "chunked": {
      const parts = body.length === 0 ? [] : [body.slice(0, body.length >> 1), body.slice(body.length >> 1)];
      const chunks = parts
        .filter((p) => p !== "")
        .map((p) => `${p.length.toString(16)}${r() < 0.3 ? ";ext=1" : ""}\r\n${p}\r\n`)
        .join("");
      const trailer = r() < 0.3 ? "X-T: 1\r\n" : "";
      return { method, bytes: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${chunks}0\r\n${trailer}\r\n${stray}` }; // prettier-ignore
    }
    case "close":
      return { method, bytes: `HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n${body}` };
    case "204":
      return { method, bytes: `HTTP/1.1 204 No Content\r\n\r\n${stray}` };
    case "bad-chunk":
      return {
        method,
        bytes: `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${body}\r\n0\r\n\r\n`,
      };
  }
}

function cut(bytes: string, r: () => number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (at < bytes.length) {
    const n = 1 + Math.floor(r() * (r() < 0.5 ? 8 : bytes.length));
    out.push(Buffer.from(bytes.slice(at, at + n), "latin1"));
    at += n;
  }
  return out;
}

describe("gateway response body: where a response ends, as the proxy's reader says", () => {
  test("3,000 seeded random responses in random reads: the same bytes, end, stray bytes and failures", () => {
    const r = prng(1617);
    const kinds = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const { method, bytes } = randomResponse(r);
      const reads = cut(bytes, r);
      const want = byReader(method, reads);
      assert.deepEqual(byBody(method, reads), want, JSON.stringify({ method, bytes }));
      kinds.add(want.error ? "error" : want.done ? (want.extra > 0 ? "extra" : "done") : "open");
    }
    // Every kind of ending came up, so each was compared.
    assert.deepEqual([...kinds].sort(), ["done", "error", "extra", "open"]);
  });
});
