import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import { parseClientHello } from "../../src/proxy/tls/clienthello.js";

const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const u24 = (n: number): number[] => [n >> 16, (n >> 8) & 0xff, n & 0xff];

function ext(type: number, data: number[]): number[] {
  return [...u16(type), ...u16(data.length), ...data];
}
function sniExt(...names: string[]): number[] {
  const list = names.flatMap((n) => [0, ...u16(n.length), ...Buffer.from(n, "latin1")]);
  return ext(0, [...u16(list.length), ...list]);
}
function alpnExt(...protos: string[]): number[] {
  const list = protos.flatMap((p) => [p.length, ...Buffer.from(p)]);
  return ext(16, [...u16(list.length), ...list]);
}

/** A ClientHello handshake message with the given extensions (undefined: no extensions block). */
function hello(exts: number[][] | undefined, opts: { sessionId?: number } = {}): Buffer {
  const sid = opts.sessionId ?? 32;
  const body = [
    3,
    3,
    ...new Array<number>(32).fill(7),
    sid,
    ...new Array<number>(sid).fill(1),
    ...u16(4),
    0x13,
    0x01,
    0x13,
    0x02,
    1,
    0,
  ];
  if (exts) {
    const all = exts.flat();
    body.push(...u16(all.length), ...all);
  }
  return Buffer.from([1, ...u24(body.length), ...body]);
}

/** Wraps a handshake into records of at most `size` bytes. */
function records(hs: Buffer, size = 16384): Buffer {
  const out: Buffer[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const part = hs.subarray(i, i + size);
    out.push(Buffer.from([22, 3, 1, ...u16(part.length)]), part);
  }
  return Buffer.concat(out);
}

describe("TLS ClientHello: SNI", () => {
  const ok: { name: string; bytes: Buffer; sni: string | undefined; alpn?: string[] }[] = [
    { name: "one host name", bytes: records(hello([sniExt("api.example.com")])), sni: "api.example.com" },
    {
      name: "host name lower-cased",
      bytes: records(hello([sniExt("API.Example.COM")])),
      sni: "api.example.com",
    },
    { name: "no extensions at all", bytes: records(hello(undefined)), sni: undefined },
    { name: "extensions without SNI", bytes: records(hello([alpnExt("h2")])), sni: undefined, alpn: ["h2"] },
    {
      name: "SNI and ALPN",
      bytes: records(hello([alpnExt("h2", "http/1.1"), sniExt("a.b")])),
      sni: "a.b",
      alpn: ["h2", "http/1.1"],
    },
    {
      name: "handshake fragmented over many 7-byte records",
      bytes: records(hello([sniExt("frag.example.com")]), 7),
      sni: "frag.example.com",
    },
    {
      name: "record boundary inside the handshake header",
      bytes: records(hello([sniExt("x.example.com")]), 2),
      sni: "x.example.com",
    },
    { name: "empty session id", bytes: records(hello([sniExt("a.io")], { sessionId: 0 })), sni: "a.io" },
  ];
  for (const c of ok) {
    test(`reads ${c.name}`, () => {
      const r = parseClientHello(c.bytes);
      assert.equal(r.kind, "ok");
      if (r.kind !== "ok") return;
      assert.equal(r.sni, c.sni);
      assert.deepEqual(r.alpn, c.alpn ?? []);
      assert.equal(r.length, c.bytes.length);
    });
  }

  test("every strict prefix of a (fragmented) ClientHello is incomplete, never an error", () => {
    for (const bytes of [
      records(hello([sniExt("api.example.com")])),
      records(hello([sniExt("api.example.com")]), 9),
    ]) {
      for (let n = 0; n < bytes.length; n++) {
        assert.deepEqual(parseClientHello(bytes.subarray(0, n)), { kind: "incomplete" }, `prefix ${n}`);
      }
    }
  });

  test("the ClientHello of Node's own TLS client carries its servername", async () => {
    const captured = await new Promise<Buffer>((resolve) => {
      const server = net.createServer((s) => {
        let buf = Buffer.alloc(0);
        s.on("data", (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (parseClientHello(buf).kind !== "incomplete") {
            s.destroy();
            server.close();
            resolve(buf);
          }
        });
      });
      server.listen(0, "127.0.0.1", () => {
        const c = tls.connect({
          port: (server.address() as AddressInfo).port,
          host: "127.0.0.1",
          servername: "Real.Example.org",
          ALPNProtocols: ["h2"],
        });
        c.on("error", () => undefined);
      });
    });
    const r = parseClientHello(captured);
    assert.equal(r.kind, "ok");
    assert.equal(r.kind === "ok" && r.sni, "real.example.org");
    assert.deepEqual(r.kind === "ok" && r.alpn, ["h2"]);
  });
});

describe("TLS ClientHello: hostile or ambiguous input is an error", () => {
  const h = (exts: number[][]): Buffer => records(hello(exts));
  const bad: { name: string; bytes: Buffer; reason: RegExp }[] = [
    {
      name: "an HTTP request",
      bytes: Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
      reason: /not a TLS handshake/,
    },
    {
      name: "an SSLv2 hello",
      bytes: Buffer.from([0x80, 0x2e, 1, 3, 1, 0, 0x15, 0, 0]),
      reason: /not a TLS handshake/,
    },
    { name: "record length 0", bytes: Buffer.from([22, 3, 1, 0, 0]), reason: /record length 0/ },
    { name: "record longer than 2^14", bytes: Buffer.from([22, 3, 1, 0x40, 0x01]), reason: /record length/ },
    { name: "record version 2", bytes: Buffer.from([22, 2, 0, 0, 4, 1, 0, 0, 0]), reason: /record version/ },
    { name: "ServerHello instead", bytes: records(Buffer.from([2, 0, 0, 0])), reason: /not a ClientHello/ },
    {
      name: "a handshake length of 16 MiB",
      bytes: Buffer.from([22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff]),
      reason: /too large/,
    },
    {
      name: "an alert record in the middle of a fragmented hello",
      bytes: Buffer.concat([
        records(hello([sniExt("a.io")]), 10).subarray(0, 15),
        Buffer.from([21, 3, 1, 0, 2, 2, 40]),
      ]),
      reason: /another record type/,
    },
    { name: "two SNI extensions", bytes: h([sniExt("a.io"), sniExt("b.io")]), reason: /twice/ },
    {
      name: "two host names in one SNI",
      bytes: h([sniExt("a.io", "b.io")]),
      reason: /more than one host_name/,
    },
    { name: "a NUL in the host name", bytes: h([sniExt("a.io\0.evil.com")]), reason: /not a DNS host name/ },
    { name: "a trailing dot", bytes: h([sniExt("a.io.")]), reason: /not a DNS host name/ },
    { name: "an empty label", bytes: h([sniExt("a..io")]), reason: /not a DNS host name/ },
    { name: "an empty host name", bytes: h([sniExt("")]), reason: /not a DNS host name/ },
    { name: "a wildcard host name", bytes: h([sniExt("*.a.io")]), reason: /not a DNS host name/ },
    { name: "an empty server_name list", bytes: h([ext(0, [0, 0])]), reason: /list length/ },
    {
      name: "server_name list length past the extension",
      bytes: h([ext(0, [0, 9, 0, 0, 1, 97])]),
      reason: /list length/,
    },
    {
      name: "server_name entry length past the list",
      bytes: h([ext(0, [0, 4, 0, 0, 9, 97])]),
      reason: /truncated/,
    },
    {
      name: "unknown name type",
      bytes: h([ext(0, [0, 4, 1, 0, 1, 97])]),
      reason: /unknown server_name type/,
    },
    {
      name: "extension length past the block",
      bytes: records(
        (() => {
          const hs = Buffer.from(hello([]));
          hs.writeUInt16BE(50, hs.length - 2);
          return hs;
        })(),
      ),
      reason: /extensions length/,
    },
    { name: "session id longer than 32", bytes: records(hello([], { sessionId: 33 })), reason: /session id/ },
    {
      name: "bytes after the ClientHello in its record",
      bytes: records(Buffer.concat([hello([sniExt("a.io")]), Buffer.from([20, 0, 0, 0])])),
      reason: /bytes after the ClientHello/,
    },
  ];
  for (const c of bad) {
    test(`refuses ${c.name}`, () => {
      const r = parseClientHello(c.bytes);
      assert.equal(r.kind, "error", JSON.stringify(r));
      assert.match(r.kind === "error" ? r.reason : "", c.reason);
    });
  }

  test("20000 mutated ClientHellos: never throws, never reads an SNI that is not a host name", () => {
    let s = 7;
    const rnd = (n: number): number => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s >>> 8) % n;
    };
    const seed = records(hello([alpnExt("h2"), sniExt("seed.example.com")]), 50);
    for (let i = 0; i < 20000; i++) {
      let b = Buffer.from(seed);
      for (let k = 0; k < 1 + rnd(4); k++) {
        if (rnd(3) === 0) b = b.subarray(0, rnd(b.length + 1));
        else if (b.length) b[rnd(b.length)] = rnd(256);
      }
      const r = parseClientHello(b);
      if (r.kind === "ok" && r.sni !== undefined) assert.match(r.sni, /^[a-z0-9_.-]+$/);
    }
  });
});
