// The DNS proxy's native UDP path (native/membrane-dns-io.c, src/proxy/dns/native-io.ts) against
// real sockets on loopback, and what it shares with the dgram fallback:
//   - the native path is the default once built; io "dgram" and MEMBRANE_PROXY_IO=stream keep dgram;
//   - replies leave from the listener's own address and port to the query's source (IPv4 and IPv6),
//     the flow naming the client as dgram would;
//   - hostile datagrams many at once (one sendmmsg of a hundred: truncated headers, compression
//     loops, garbage, valid queries): each valid one answered with its own id and question, the
//     malformed ones FORMERR or dropped, read in batches (recvmmsg), replies sent in batches;
//   - oversized datagrams (past maxUdpQuery, up to 65,000 bytes) dropped and counted, never read;
//   - an upstream that refuses (ICMP port unreachable) fails its query at once, on both paths.
// The rest of the DNS suites (dns-proxy, dns-hostile, dns-udp-pool) run on both paths.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import { DnsProxy, type DnsProxyLimits } from "../../src/proxy/dns/proxy.js";
import { dnsIo, dnsIoStats, ipv6Text, NativeUdp } from "../../src/proxy/dns/native-io.js";
import type { L7Event, L7LookupResult } from "../../src/proxy/types.js";
import { until } from "../support/until.js";
import { a, IO_PATHS, query, rcodeOf, response, startDns, startUpstream, udpAsk } from "./dns-harness.js";

const POLICY: L7LookupResult = {
  spec: { parser: "dns", http: [], dns: [{ matchPattern: "*.example.com" }], kafka: [], serverNames: [] },
  allowAll: false,
};
const answerAll = (q: dnsPacket.DecodedPacket): Buffer =>
  response(q, [a(q.questions?.[0]?.name ?? "", "10.0.0.1")]);

function proxyOn(
  host: string,
  upstreamPort: number,
  io: "native" | "dgram",
  events: L7Event[],
  limits: Partial<DnsProxyLimits> = {},
): DnsProxy {
  return new DnsProxy({
    limits,
    listen: { host },
    upstream: { host: "127.0.0.1", port: upstreamPort },
    lookup: { forConnection: () => POLICY },
    identify: (src) => ({
      srcIdentity: 3003,
      dstIdentity: 4004,
      direction: "egress",
      endpoint: "default/client",
      originalDst: { host: src.address, port: 53 },
      proto: "UDP",
    }),
    onAnswer: () => Promise.resolve(),
    sink: (e) => events.push(e),
    io,
  });
}

/** One query from a fresh client socket on `family`: the reply and who sent it, and the client's port. */
async function askFrom(
  type: "udp4" | "udp6",
  host: string,
  port: number,
  msg: Buffer,
): Promise<{ raw: Buffer; from: dgram.RemoteInfo; clientPort: number }> {
  const s = dgram.createSocket(type);
  try {
    await new Promise<void>((r) => s.bind(0, host, r));
    let got: { raw: Buffer; from: dgram.RemoteInfo } | undefined;
    s.once("message", (raw, from) => (got = { raw, from }));
    s.send(msg, port, host);
    await until("the reply", () => got !== undefined, 10_000);
    const r = got as unknown as { raw: Buffer; from: dgram.RemoteInfo };
    return { ...r, clientPort: s.address().port };
  } finally {
    s.close();
  }
}

describe("DNS proxy: native UDP path", () => {
  test("native is the default once built; io dgram and MEMBRANE_PROXY_IO=stream keep Node's dgram", async () => {
    assert.ok(dnsIo(), "the addon is built (dist/bin/membrane-dns-io.node)");
    const before = process.env["MEMBRANE_PROXY_IO"];
    process.env["MEMBRANE_PROXY_IO"] = "stream";
    try {
      assert.equal(dnsIo(), null);
      assert.ok(dnsIo("native"), "an explicit choice wins over the environment");
    } finally {
      if (before === undefined) delete process.env["MEMBRANE_PROXY_IO"];
      else process.env["MEMBRANE_PROXY_IO"] = before;
    }
    for (const io of [undefined, ...IO_PATHS]) {
      const h = await startDns({ answer: answerAll, ...(io ? { io } : {}) });
      try {
        assert.equal(h.proxy.udpPath, io ?? "native");
        const r = await udpAsk(h.udpPort, query("ok.example.com"));
        assert.equal(r && rcodeOf(r.raw), 0);
      } finally {
        await h.close();
      }
    }
  });

  for (const io of IO_PATHS) {
    test(`replies leave from the listener's address and port to the client's, IPv4 and IPv6 (${io})`, async () => {
      const up = await startUpstream(answerAll);
      try {
        for (const [type, host] of [
          ["udp4", "127.0.0.1"],
          ["udp6", "::1"],
        ] as const) {
          const events: L7Event[] = [];
          const p = proxyOn(host, up.port, io, events);
          const { udpPort } = await p.start();
          try {
            assert.equal(p.udpPath, io);
            const r = await askFrom(type, host, udpPort, query("ok.example.com", { id: 4711 }));
            assert.equal(r.from.address, host, `${type}: the reply's source address`);
            assert.equal(r.from.port, udpPort, `${type}: the reply's source port`);
            assert.equal(r.raw.readUInt16BE(0), 4711);
            assert.equal(rcodeOf(r.raw), 0);
            assert.deepEqual(events[0]?.client, { address: host, port: r.clientPort });
          } finally {
            await p.stop();
          }
        }
      } finally {
        await up.close();
      }
    });

    test(`an upstream that refuses (port unreachable) fails the query at once (${io})`, async () => {
      const closed = dgram.createSocket("udp4");
      await new Promise<void>((r) => closed.bind(0, "127.0.0.1", r));
      const port = closed.address().port;
      await new Promise<void>((r) => closed.close(() => r()));
      const events: L7Event[] = [];
      // A timeout far beyond the client's wait: only the refusal can answer in time.
      const p = proxyOn("127.0.0.1", port, io, events, {
        upstreamTimeoutMs: 60_000,
        answerTimeoutMs: 60_000,
      });
      const { udpPort } = await p.start();
      try {
        const r = await udpAsk(udpPort, query("ok.example.com"), 20_000);
        assert.equal(r && rcodeOf(r.raw), 2, "SERVFAIL");
        assert.equal(p.stats.upstreamErrors, 1);
      } finally {
        await p.stop();
      }
    });
  }

  test("a hundred hostile and valid datagrams at once: each valid one answered, the rest FORMERR or dropped; batched both ways", async () => {
    const h = await startDns({ answer: answerAll, io: "native" });
    const io = dnsIo();
    assert.ok(io);
    const replies = new Map<number, Buffer[]>();
    const client = NativeUdp.connect(io, "127.0.0.1", h.udpPort, 65535, {
      message: (m) => {
        const id = m.readUInt16BE(0);
        replies.set(id, [...(replies.get(id) ?? []), m]);
      },
      error: (e) => assert.fail(e),
    });
    assert.ok(client instanceof NativeUdp);
    try {
      const header = (id: number, qd = 1, flags = 0x0100): number[] => [id >> 8, id & 255, flags >> 8, flags & 255, 0, qd, 0, 0, 0, 0, 0, 0]; // prettier-ignore
      const hostile: { make: (id: number) => Buffer; expect: number | "drop" }[] = [
        { make: (id) => Buffer.from(header(id).slice(0, 7)), expect: "drop" }, // truncated header
        { make: (id) => Buffer.from([...header(id), 0xc0, 12, 0, 1, 0, 1]), expect: 1 }, // pointer loop
        { make: (id) => Buffer.from([...header(id), 0xc0, 0xff, 0, 1, 0, 1]), expect: 1 }, // pointer past the end
        { make: (id) => Buffer.from([...header(id, 0)]), expect: 1 }, // no question
        { make: (id) => Buffer.from([...header(id), 40, 1, 2]), expect: 1 }, // label past the end
        { make: (id) => Buffer.from([...header(id, 1, 0x8180), 0, 0, 1, 0, 1]), expect: "drop" }, // a response
      ];
      const sent = new Map<number, number | "drop" | "ok">();
      const before = { ...dnsIoStats };
      for (let i = 0; i < 100; i++) {
        const id = 0x2000 + i;
        if (i % 2 === 0) {
          client.send(query(`n${i}.example.com`, { id }));
          sent.set(id, "ok");
        } else {
          const c = hostile[(i >> 1) % hostile.length] as (typeof hostile)[number];
          client.send(c.make(id));
          sent.set(id, c.expect);
        }
      }
      const answered = [...sent].filter(([, e]) => e !== "drop").length;
      await until("an answer to every query not dropped", () => replies.size >= answered, {
        ms: 10_000,
        detail: () => `${replies.size} of ${answered}: ${JSON.stringify(h.proxy.stats)}`,
      });
      for (const [id, expect] of sent) {
        const got = replies.get(id);
        if (expect === "drop") assert.equal(got, undefined, `id ${id}: dropped`);
        else {
          assert.equal(got?.length, 1, `id ${id}: one reply`);
          const r = got[0] as Buffer;
          assert.equal(rcodeOf(r), expect === "ok" ? 0 : expect, `id ${id}: rcode`);
          if (expect === "ok") {
            const p = dnsPacket.decode(r);
            assert.equal(p.questions?.[0]?.name, `n${id - 0x2000}.example.com`, `id ${id}: its own question`);
          }
        }
      }
      assert.equal(h.proxy.stats.internalErrors, 0, h.proxy.lastInternalError);
      assert.equal(h.proxy.stats.queries, 100);
      assert.equal(h.proxy.stats.dropped, [...sent.values()].filter((e) => e === "drop").length);
      // One turn's hundred datagrams left in two sendmmsg calls (64 + 36) and were read in batches.
      const recvCalls = dnsIoStats.receiveCalls - before.receiveCalls;
      const received = dnsIoStats.received - before.received;
      assert.ok(received > recvCalls, `batched reads: ${received} datagrams in ${recvCalls} calls`);
      const sendCalls = dnsIoStats.sendCalls - before.sendCalls;
      const sentN = dnsIoStats.sent - before.sent;
      assert.ok(sentN > sendCalls, `batched sends: ${sentN} datagrams in ${sendCalls} calls`);
    } finally {
      client.close();
      await h.close();
    }
  });

  test("oversized datagrams (past maxUdpQuery, up to 65,000 bytes) are dropped and counted, never read", async () => {
    const h = await startDns({ answer: answerAll, io: "native" });
    try {
      const q = query("ok.example.com");
      for (const size of [4097, 9000, 65000]) {
        const big = Buffer.concat([q, Buffer.alloc(size - q.length)]);
        assert.equal(await udpAsk(h.udpPort, big, 150), undefined, `${size} bytes: no answer`);
      }
      const ok = await udpAsk(h.udpPort, q);
      assert.equal(ok && rcodeOf(ok.raw), 0);
      assert.equal(h.proxy.stats.dropped, 3);
      assert.equal(h.proxy.stats.queries, 1);
    } finally {
      await h.close();
    }
  });

  test("the addon refuses ranges outside its buffers and bad records (DNS_IO_USAGE), never touching memory past them", () => {
    const io = dnsIo();
    assert.ok(io);
    const h = io.bind("127.0.0.1", 0, () => undefined);
    assert.ok(typeof h === "object");
    try {
      const rec = (xs: number[]): Int32Array => {
        const m = new Int32Array(io.REC);
        m.set(xs);
        return m;
      };
      const usage = { code: "DNS_IO_USAGE" };
      const buf = Buffer.alloc(64);
      assert.throws(
        () => io.send(h, buf, 1, rec([60, 8, 4, 53, 0x0100007f])),
        usage,
        "offset + length past the end",
      );
      assert.throws(() => io.send(h, buf, 1, rec([-1, 8, 4, 53, 0x0100007f])), usage, "negative offset");
      assert.throws(() => io.send(h, buf, 1, rec([0, 8, 5, 53, 0x0100007f])), usage, "family 5");
      assert.throws(() => io.send(h, buf, 1, rec([0, 8, 4, 70000, 0x0100007f])), usage, "port 70000");
      assert.throws(
        () => io.send(h, buf, 2, rec([0, 8, 4, 53, 0x0100007f])),
        usage,
        "more records than meta holds",
      );
      assert.throws(() => io.send(h, buf, 65, new Int32Array(io.REC * 65)), usage, "past MAX_BATCH");
      assert.throws(
        () => io.recv(h, buf, 64, new Int32Array(io.REC * 2), 2),
        usage,
        "2 slots of 64 in 64 bytes",
      );
      assert.throws(() => io.recv(h, buf, 32, new Int32Array(io.REC), 2), usage, "2 records in meta of 1");
      assert.throws(
        () => io.recv(h, buf, 32, new Uint32Array(io.REC * 2) as unknown as Int32Array, 2),
        usage,
      );
      assert.equal(io.recv(h, buf, 32, new Int32Array(io.REC * 2), 2), io.EAGAIN, "nothing to read yet");
      assert.equal(
        io.bind("not-an-address", 0, () => undefined),
        -22,
        "EINVAL: names are dgram's",
      );
    } finally {
      io.close(h);
    }
    assert.equal(io.recv(h, Buffer.alloc(64), 32, new Int32Array(io.REC * 2), 2), -9, "EBADF once closed");
  });

  test("IPv6 addresses print as inet_ntop and Node print them (RFC 5952)", () => {
    const cases: [string, string][] = [
      ["00000000000000000000000000000001", "::1"],
      ["00000000000000000000000000000000", "::"],
      ["fd000000000000000000000000000001", "fd00::1"],
      ["20010db8000000010000000000000001", "2001:db8:0:1::1"],
      ["20010db8000000000001000000000001", "2001:db8::1:0:0:1"],
      ["20010db8000100020003000400050006", "2001:db8:1:2:3:4:5:6"],
      ["00000000000000000000ffff7f000001", "::ffff:127.0.0.1"],
      ["fe800000000000000200000000000000", "fe80::200:0:0:0"],
    ];
    for (const [hex, text] of cases) assert.equal(ipv6Text(Buffer.from(hex, "hex")), text, hex);
  });
});
