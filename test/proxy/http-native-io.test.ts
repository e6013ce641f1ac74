/**
 * The HTTP proxy's native socket I/O (src/proxy/http/native-io.ts, native/membrane-proxy-io.c)
 * on real loopback sockets: the fds are really taken, bytes Node buffered before the takeover
 * come first, short writes are queued in order both ways under backpressure (16 MB bodies
 * whose digests must match), and hostile framing is refused alike with native I/O and with
 * Node's streams.
 */
import { createHash } from "node:crypto";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { nativeIoStats, proxyIo } from "../../src/proxy/http/native-io.js";
import { countResponses, rawExchange, startHarness, statuses } from "./http-harness.js";

const H = "Host: svc.local\r\n";
const BIG = 16 * 1024 * 1024;
const BAD_REQUEST =
  "HTTP/1.1 400 Bad Request\r\ncontent-length: 13\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nBad Request\r\n";

/** Deterministic bytes: n of them, from a seed. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}

const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");

/** Waits for `cond` (checked every 5 ms), failing after `ms`: a condition, not a sleep. */
async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A raw upstream: reads one request head and Content-Length body (hashing it), then answers
 * 200 with `respond` bytes. `holdBody` pauses it after the head until the promise settles.
 */
function bigUpstream(opts: {
  respond: Buffer;
  holdBody?: () => Promise<void>;
  bodyHash: (h: string) => void;
}) {
  return (s: net.Socket): void => {
    let head = Buffer.alloc(0);
    let left = -1;
    const hash = createHash("sha256");
    s.on("error", () => undefined);
    const onBody = (d: Buffer): void => {
      const n = Math.min(left, d.length);
      hash.update(d.subarray(0, n));
      left -= n;
      if (left === 0) {
        opts.bodyHash(hash.digest("hex"));
        s.write(`HTTP/1.1 200 OK\r\nContent-Length: ${opts.respond.length}\r\n\r\n`);
        s.write(opts.respond);
      }
    };
    s.on("data", (d: Buffer) => {
      if (left >= 0) return onBody(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      const m = /content-length: *(\d+)/i.exec(head.toString("latin1", 0, end));
      left = Number(m?.[1] ?? 0);
      const rest = head.subarray(end + 4);
      if (left === 0) return onBody(Buffer.alloc(0));
      if (!opts.holdBody) return onBody(rest);
      s.pause();
      void opts.holdBody().then(() => {
        onBody(rest);
        s.resume();
      });
    });
  };
}

/**
 * Sends `req`, waits for `before` (the client not reading meanwhile), then reads the whole
 * response: its body's length and digest (hashed as it comes: no copy of 16 MB per read).
 */
function exchange(
  port: number,
  req: Buffer[],
  before: () => Promise<void>,
): Promise<{ length: number; digest: string }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, "127.0.0.1");
    let head = Buffer.alloc(0);
    let left = -1;
    let length = 0;
    const hash = createHash("sha256");
    // A safety net, never a measure: a lost byte must fail the test, not hang it.
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete response within 30 s (${length} body bytes, ${left} left)`));
    }, 30_000);
    const body = (d: Buffer): void => {
      const n = Math.min(left, d.length);
      hash.update(d.subarray(0, n));
      length += n;
      left -= n;
      if (left === 0) {
        clearTimeout(timer);
        s.destroy();
        resolve({ length, digest: hash.digest("hex") });
      }
    };
    s.pause();
    s.on("error", reject);
    s.on("data", (d: Buffer) => {
      if (left >= 0) return body(d);
      head = Buffer.concat([head, d]);
      const end = head.indexOf("\r\n\r\n");
      if (end < 0) return;
      left = Number(/content-length: *(\d+)/i.exec(head.toString("latin1", 0, end))?.[1] ?? 0);
      body(head.subarray(end + 4));
    });
    for (const b of req) s.write(b);
    void before().then(() => s.resume(), reject);
  });
}

describe(
  "HTTP proxy: native socket I/O",
  { skip: proxyIo() ? false : "dist/bin/membrane-proxy-io.node not built" },
  () => {
    test("plain TCP sockets are taken (both ends) and upstream counts what the proxy wrote natively", async () => {
      const h = await startHarness({});
      try {
        const taken = nativeIoStats.taken;
        const r = await rawExchange(h.port, `GET /public/a HTTP/1.1\r\n${H}\r\n`, {
          until: countResponses(1),
        });
        assert.deepEqual(statuses(r.text), [200]);
        assert.equal(nativeIoStats.taken - taken, 2, "client and upstream fds taken");
        assert.ok((await h.upstreamBytes()) > 0, "upstream's count sees natively written bytes");
      } finally {
        await h.close();
      }
    });

    test("bytes Node buffered before the takeover (a sniffed head) come first, split and pipelined", async () => {
      const h = await startHarness({ sniff: true });
      try {
        const reqs = [
          `GET /pub`,
          `lic/1 HTTP/1.1\r\n${H}\r\nGET /admin HTTP/1.1\r\n${H}\r\nGET /public/2 HTTP/1.1\r\n${H}\r\n`,
        ];
        const r = await rawExchange(h.port, reqs, { until: countResponses(3) });
        assert.deepEqual(statuses(r.text), [200, 403, 200]);
        assert.deepEqual(
          h.seen.map((s) => s.url),
          ["/public/1", "/public/2"],
        );
      } finally {
        await h.close();
      }
    });

    test("16 MB request body to an upstream that does not read: short writes queued, sent in order", async () => {
      let hash = "";
      const partial = nativeIoStats.partialWrites;
      const h = await startHarness({
        rules: [{ path: "/public/.*", headers: [] }],
        rawUpstream: bigUpstream({
          respond: Buffer.from("done"),
          holdBody: () =>
            waitFor(() => nativeIoStats.partialWrites > partial, "a short write towards upstream"),
          bodyHash: (x) => (hash = x),
        }),
      });
      try {
        const body = pattern(BIG, 7);
        const head = Buffer.from(`POST /public/up HTTP/1.1\r\n${H}Content-Length: ${BIG}\r\n\r\n`, "latin1");
        const got = await exchange(h.port, [head, body], () => Promise.resolve());
        assert.deepEqual(got, { length: 4, digest: sha(Buffer.from("done")) });
        assert.equal(hash, sha(body));
        assert.ok(nativeIoStats.partialWrites > partial);
      } finally {
        await h.close();
      }
    });

    test("16 MB response to a client that does not read: short writes queued, upstream paused, sent in order", async () => {
      const respond = pattern(BIG, 11);
      const partial = nativeIoStats.partialWrites;
      const h = await startHarness({
        rawUpstream: bigUpstream({ respond, bodyHash: () => undefined }),
      });
      try {
        const req = Buffer.from(`GET /public/down HTTP/1.1\r\n${H}\r\n`, "latin1");
        const got = await exchange(h.port, [req], () =>
          waitFor(() => nativeIoStats.partialWrites > partial, "a short write towards the client"),
        );
        assert.deepEqual(got, { length: BIG, digest: sha(respond) });
      } finally {
        await h.close();
      }
    });

    for (const io of ["native", "stream"] as const) {
      test(`hostile framing is refused before a byte reaches upstream (${io} I/O)`, async () => {
        const h = await startHarness({ io });
        try {
          const taken = nativeIoStats.taken;
          for (const req of [
            `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
            `POST /public/a HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
            `GET /public/a HTTP/1.1\r\n${H}X-A: b\r\n c\r\n\r\n`,
            `GET /public/a HTTP/1.1\n${H}\r\n`,
            `POST /public/a HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n`,
            `GET /public/a HTTP/1.1\r\n${H}X-A : b\r\n\r\n`,
          ]) {
            const r = await rawExchange(h.port, req);
            assert.equal(r.text, BAD_REQUEST, JSON.stringify(req));
            assert.equal(r.closed, true);
          }
          assert.equal(await h.upstreamBytes(), 0, "bytes reached upstream");
          assert.equal(nativeIoStats.taken - taken, io === "native" ? 6 : 0);
          const ok = await rawExchange(h.port, `GET /public/b HTTP/1.1\r\n${H}\r\n`, {
            until: countResponses(1),
          });
          assert.deepEqual(statuses(ok.text), [200]);
        } finally {
          await h.close();
        }
      });
    }
  },
);
