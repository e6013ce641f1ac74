import { describe, test } from "node:test";
import assert from "node:assert/strict";
import dnsPacket from "dns-packet";
import {
  a,
  framed,
  query,
  rcodeOf,
  response,
  startDns,
  tcpAsk,
  udpAsk,
  IO_PATHS,
  type Answerer,
} from "./dns-harness.js";

const addrs = (n: number): string[] =>
  Array.from({ length: n }, (_, i) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`);

/** The resolver every test talks to. */
const resolver: Answerer = (q, proto) => {
  const name = q.questions?.[0]?.name ?? "";
  switch (name.toLowerCase()) {
    case "allowed.example.com":
      return response(q, [a(name, "10.0.0.1", 30), a(name, "10.0.0.2", 60)]);
    case "cname.example.com":
      return response(q, [
        { type: "CNAME", name, ttl: 50, class: "IN", data: "target.example.net" },
        a("target.example.net", "10.0.0.3", 20),
        a("unrelated.example.org", "10.9.9.9", 5),
      ]);
    case "v6.example.com":
      return response(q, [{ type: "AAAA", name, ttl: 10, class: "IN", data: "fd00::1" }]);
    case "nx.example.com":
      return response(q, [], { flags: dnsPacket.RECURSION_AVAILABLE | 3 });
    case "big.example.com":
      return proto === "UDP"
        ? response(q, [], { flags: dnsPacket.TRUNCATED_RESPONSE | dnsPacket.RECURSION_AVAILABLE })
        : response(
            q,
            addrs(40).map((ip) => a(name, ip, 30)),
          );
    default:
      return response(q, [a(name, "10.0.0.99")]);
  }
};

for (const io of IO_PATHS) {
  describe(`DNS proxy: verdicts (${io})`, () => {
    test("an allowed query is answered by upstream and its addresses reach onAnswer first", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await udpAsk(h.udpPort, query("Allowed.Example.com", { id: 777 }));
        assert.ok(r);
        const p = dnsPacket.decode(r.raw);
        assert.equal(p.id, 777);
        assert.equal(rcodeOf(r.raw), 0);
        assert.deepEqual(
          p.answers?.map((x) => (x as { data?: unknown }).data),
          ["10.0.0.1", "10.0.0.2"],
        );
        assert.deepEqual(
          h.calls.map((c) => [c.endpoint, c.name, c.ips, c.ttl]),
          [["default/client", "allowed.example.com.", ["10.0.0.1", "10.0.0.2"], 30]],
        );
        assert.equal(h.events[0]?.verdict, "forwarded");
        assert.equal(h.events[0]?.query, "allowed.example.com.");
        assert.equal(h.events[0]?.qtype, "A");
        assert.equal(h.events[0]?.rcode, "NOERROR");
        assert.deepEqual(h.events[0]?.answers, ["10.0.0.1", "10.0.0.2"]);
      } finally {
        await h.close();
      }
    });

    test("a denied name gets REFUSED with the same id and question, and upstream sees nothing", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const q = query("evil.example.org", { id: 31337 });
        const r = await udpAsk(h.udpPort, q);
        assert.ok(r);
        // Header: id, QR|RD|RA|REFUSED, 1 question; then the question bytes of the query.
        const expected = Buffer.concat([
          Buffer.from([0x7a, 0x69, 0x81, 0x85, 0, 1, 0, 0, 0, 0, 0, 0]),
          q.subarray(12),
        ]);
        assert.deepEqual(r.raw, expected);
        assert.equal(h.upstream.received.length, 0);
        assert.equal(h.calls.length, 0);
        assert.equal(h.events[0]?.verdict, "denied");
        assert.equal(h.events[0]?.rcode, "REFUSED");
      } finally {
        await h.close();
      }
    });

    test("the apex is not matched by *.example.com (REFUSED)", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await udpAsk(h.udpPort, query("example.com"));
        assert.equal(rcodeOf(r?.raw ?? Buffer.alloc(4)), 5);
      } finally {
        await h.close();
      }
    });

    test("a label holding a dot cannot pose as two labels (REFUSED)", async () => {
      const h = await startDns({ io, answer: resolver, rules: [{ matchName: "allowed.example.com" }] });
      try {
        // One label "allowed.example" + "com": presented as allowed\046example.com., matching nothing.
        const q = Buffer.concat([
          Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 15]),
          Buffer.from("allowed.example"),
          Buffer.from([3]),
          Buffer.from("com"),
          Buffer.from([0, 0, 1, 0, 1]),
        ]);
        const r = await udpAsk(h.udpPort, q);
        assert.equal(rcodeOf(r?.raw ?? Buffer.alloc(4)), 5);
        assert.equal(h.events[0]?.query, "allowed\\046example.com.");
      } finally {
        await h.close();
      }
    });

    test("no identity for the client, or no DNS policy: REFUSED (fail closed)", async () => {
      const h = await startDns({ io, answer: resolver, identify: false });
      try {
        const r1 = await udpAsk(h.udpPort, query("allowed.example.com"));
        assert.equal(rcodeOf(r1?.raw ?? Buffer.alloc(4)), 5);
      } finally {
        await h.close();
      }
      const h2 = await startDns({ io, answer: resolver });
      try {
        h2.setPolicy(undefined);
        const r2 = await udpAsk(h2.udpPort, query("allowed.example.com"));
        assert.equal(rcodeOf(r2?.raw ?? Buffer.alloc(4)), 5);
        h2.setPolicy({
          spec: { parser: "http", http: [], dns: [], kafka: [], serverNames: [] },
          allowAll: true,
        });
        const r3 = await udpAsk(h2.udpPort, query("allowed.example.com"));
        assert.equal(rcodeOf(r3?.raw ?? Buffer.alloc(4)), 5);
        assert.equal(h2.upstream.received.length, 0);
      } finally {
        await h2.close();
      }
    });

    test("allowAll forwards names no rule matches", async () => {
      const h = await startDns({ io, answer: resolver, rules: [] });
      try {
        h.setPolicy({
          spec: { parser: "dns", http: [], dns: [], kafka: [], serverNames: [] },
          allowAll: true,
        });
        const r = await udpAsk(h.udpPort, query("anything.test"));
        assert.equal(rcodeOf(r?.raw ?? Buffer.alloc(4)), 0);
      } finally {
        await h.close();
      }
    });

    test("CNAME chains: addresses of the chain's target, not unrelated records; smallest TTL", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        await udpAsk(h.udpPort, query("cname.example.com"));
        assert.deepEqual(
          h.calls.map((c) => [c.name, c.ips, c.ttl]),
          [["cname.example.com.", ["10.0.0.3"], 20]],
        );
      } finally {
        await h.close();
      }
    });

    test("AAAA answers and NXDOMAIN pass through; NXDOMAIN calls no onAnswer", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await udpAsk(h.udpPort, query("v6.example.com", { type: "AAAA" }));
        assert.deepEqual(h.calls[0]?.ips, ["fd00::1"]);
        assert.equal(rcodeOf(r?.raw ?? Buffer.alloc(4)), 0);
        const nx = await udpAsk(h.udpPort, query("nx.example.com"));
        assert.equal(rcodeOf(nx?.raw ?? Buffer.alloc(4)), 3);
        assert.equal(h.calls.length, 1);
      } finally {
        await h.close();
      }
    });
  });

  describe(`DNS proxy: the answer waits for onAnswer (${io})`, () => {
    test("the client receives the answer only after onAnswer resolved", async () => {
      const h = await startDns({
        io,
        answer: resolver,
        onAnswer: () => new Promise((r) => setTimeout(r, 80)),
      });
      try {
        const sent = performance.now();
        const r = await udpAsk(h.udpPort, query("allowed.example.com"));
        assert.ok(r);
        const resolvedAt = h.calls[0]?.resolvedAt;
        assert.ok(
          resolvedAt !== undefined && r.at >= resolvedAt,
          `answer at ${r.at}, onAnswer resolved at ${resolvedAt}`,
        );
        assert.ok(r.at - sent >= 75, `answer after ${r.at - sent} ms`);
      } finally {
        await h.close();
      }
    });

    test("onAnswer failing: SERVFAIL, the addresses are not released", async () => {
      const h = await startDns({
        io,
        answer: resolver,
        onAnswer: () => Promise.reject(new Error("nft failed")),
      });
      try {
        const r = await udpAsk(h.udpPort, query("allowed.example.com"));
        assert.ok(r);
        assert.equal(rcodeOf(r.raw), 2);
        assert.equal(dnsPacket.decode(r.raw).answers?.length, 0);
        assert.equal(h.proxy.stats.onAnswerFailures, 1);
        assert.match(h.events[0]?.reason ?? "", /nft failed/);
      } finally {
        await h.close();
      }
    });

    test("onAnswer never settling: SERVFAIL after answerTimeoutMs", async () => {
      const h = await startDns({
        io,
        answer: resolver,
        onAnswer: () => new Promise(() => undefined),
        limits: { answerTimeoutMs: 100 },
      });
      try {
        const r = await udpAsk(h.udpPort, query("allowed.example.com"));
        assert.equal(rcodeOf(r?.raw ?? Buffer.alloc(4)), 2);
      } finally {
        await h.close();
      }
    });
  });

  describe(`DNS proxy: TCP and truncation (${io})`, () => {
    test("TCP queries are answered over TCP with length framing, pipelined on one connection", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await tcpAsk(
          h.tcpPort,
          framed(query("allowed.example.com", { id: 1 }), query("evil.org", { id: 2 })),
          2,
        );
        const byId = new Map(r.replies.map((m) => [m.readUInt16BE(0), rcodeOf(m)]));
        assert.deepEqual([...byId.entries()].sort(), [
          [1, 0],
          [2, 5],
        ]);
        assert.deepEqual(h.upstream.received, [{ name: "allowed.example.com", proto: "TCP" }]);
      } finally {
        await h.close();
      }
    });

    test("a truncated UDP answer is fetched again over TCP: onAnswer gets every address, the client a TC answer", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await udpAsk(h.udpPort, query("big.example.com"));
        assert.ok(r);
        assert.ok(r.raw.readUInt16BE(2) & 0x0200, "TC bit");
        assert.equal(h.calls[0]?.ips.length, 40);
        assert.deepEqual(
          h.upstream.received.map((x) => x.proto),
          ["UDP", "TCP"],
        );
      } finally {
        await h.close();
      }
    });

    test("with an EDNS buffer large enough, the client gets the full TCP answer over UDP", async () => {
      const h = await startDns({ io, answer: resolver });
      try {
        const r = await udpAsk(h.udpPort, query("big.example.com", { edns: 4096 }));
        assert.ok(r);
        assert.equal(r.raw.readUInt16BE(2) & 0x0200, 0);
        assert.equal(dnsPacket.decode(r.raw).answers?.length, 40);
      } finally {
        await h.close();
      }
    });
  });
}
