/**
 * The DNS proxy's shortcuts checked against the long way round: an EDNS query read by hand
 * against dns-packet's reading (and never accepting what dns-packet refuses), a name compressed
 * to the question read as the question's name, and the verdict cache per (policy spec, name)
 * against the rules themselves, across a policy change.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import dnsPacket from "dns-packet";
import { parseQuery, readAnswer, type Query } from "../../src/proxy/dns/message.js";
import { DnsVerdicts } from "../../src/proxy/dns/verdicts.js";
import type { L7LookupResult } from "../../src/proxy/types.js";
import type { DnsRule } from "../../src/policy/types.js";

const cat = (...b: (Buffer | number[])[]): Buffer =>
  Buffer.concat(b.map((x) => (Buffer.isBuffer(x) ? x : Buffer.from(x))));
const u16 = (n: number): number[] => [n >> 8, n & 0xff];
const nameBytes = (name: string): Buffer =>
  cat(...name.split(".").map((l) => cat([l.length], Buffer.from(l, "latin1"))), [0]);
/** A query for `name` (type A) with arcount additional bytes `extra`. */
const queryWith = (name: string, arcount: number, extra: Buffer, qtype = 1): Buffer =>
  cat([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, ...u16(arcount)], nameBytes(name), [...u16(qtype), 0, 1], extra);
/** An OPT record: root owner, type 41, class = UDP size, ttl 0, options as given. */
const opt = (size: number, options: [number, Buffer][]): Buffer => {
  const rdata = cat(...options.map(([code, data]) => cat(u16(code), u16(data.length), data)));
  return cat([0], u16(41), u16(size), [0, 0, 0, 0], u16(rdata.length), rdata);
};

function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe("DNS fast paths agree with the long way", () => {
  test("an EDNS query (one OPT record) read by hand: the UDP size dns-packet reads, clamped to 512..4096", () => {
    const cases: [number, [number, Buffer][]][] = [
      [1232, []],
      [4096, [[10, Buffer.alloc(8, 7)]]],
      [65535, [[12, Buffer.alloc(0)]]],
      [
        0,
        [
          [10, Buffer.alloc(24, 1)],
          [12, Buffer.alloc(100)],
        ],
      ],
      [1400, [[8, Buffer.from([0, 1, 24, 0, 192, 0, 2])]]], // client subnet: dns-packet's reading
    ];
    for (const [size, options] of cases) {
      const m = queryWith("api.example.com", 1, opt(size, options));
      const r = parseQuery(m);
      assert.equal(r.kind, "ok", JSON.stringify(r));
      const ref = dnsPacket.decode(m).additionals?.find((x) => x.type === "OPT") as {
        udpPayloadSize: number;
      };
      assert.equal(r.kind === "ok" ? r.query.udpSize : 0, Math.min(4096, Math.max(512, ref.udpPayloadSize)));
    }
  });

  test("hostile OPT records are refused (FORMERR), never read as plain", () => {
    const bad: [string, Buffer][] = [
      ["rdlength past the end", cat(opt(1232, []).subarray(0, 9), [0, 50], [1, 2])],
      ["option longer than the rdata", cat([0], u16(41), u16(1232), [0, 0, 0, 0], u16(4), u16(10), u16(9))],
      ["bytes after the OPT record", cat(opt(1232, []), [0])],
      // Options dns-packet reads further: left to it, which refuses a 1-byte keep-alive or key tag at the end.
      ["keep-alive option of 1 byte", opt(1232, [[11, Buffer.from([5])]])],
      ["key tag option of 1 byte", opt(1232, [[14, Buffer.from([5])]])],
    ];
    for (const [name, extra] of bad) {
      const r = parseQuery(queryWith("api.example.com", 1, extra));
      assert.equal(r.kind, "reply", name);
      assert.equal(r.kind === "reply" ? r.rcode : -1, 1, name);
    }
  });

  test("4000 mutated EDNS queries: whatever is accepted, dns-packet decodes whole with the same UDP size", () => {
    const rnd = prng(7);
    const seeds = [
      queryWith("a.example.com", 1, opt(1232, [[10, Buffer.alloc(8, 3)]])),
      queryWith("b.example.com", 1, opt(4096, [])),
    ];
    let accepted = 0;
    for (let i = 0; i < 4000; i++) {
      const m = Buffer.from(seeds[i % 2] as Buffer);
      for (let k = 1 + Math.floor(rnd() * 3); k > 0; k--) m[Math.floor(rnd() * m.length)] = Math.floor(rnd() * 256); // prettier-ignore
      const cut = rnd() < 0.2 ? m.subarray(0, Math.floor(rnd() * m.length)) : m;
      const r = parseQuery(cut);
      if (r.kind !== "ok" || cut.readUInt16BE(10) === 0) continue;
      accepted++;
      const p = dnsPacket.decode(cut);
      assert.equal(dnsPacket.decode.bytes, cut.length, cut.toString("hex"));
      const o = p.additionals?.find((x) => x.type === "OPT") as { udpPayloadSize?: number } | undefined;
      const size = o ? Math.min(4096, Math.max(512, o.udpPayloadSize ?? 512)) : 512;
      assert.equal(r.query.udpSize, size, cut.toString("hex"));
    }
    assert.ok(accepted > 200, `only ${accepted} accepted: the mutations say little`);
  });

  const ask = (name: string, qtype = 1): Query => {
    const r = parseQuery(queryWith(name, 0, Buffer.alloc(0), qtype));
    assert.equal(r.kind, "ok");
    return (r as { query: Query }).query;
  };
  /** An answer to `q` with the question as given and records built from owner-name bytes. */
  const answer = (q: Query, question: Buffer, records: Buffer[]): Buffer =>
    cat([0x12, 0x34, 0x81, 0x80, 0, 1, ...u16(records.length), 0, 0, 0, 0], question, ...records);
  const rr = (owner: Buffer, type: number, rdata: Buffer): Buffer =>
    cat(owner, u16(type), [0, 1, 0, 0, 0, 30], u16(rdata.length), rdata);
  const PTR = Buffer.from([0xc0, 12]);

  test("a name compressed to the question reads as the question's name: same addresses and CNAMEs as written out", () => {
    const q = ask("www.Example.com");
    const question = q.question;
    const upper = Buffer.from(question);
    for (let i = 0; i < upper.length - 4; i++) if (upper[i] === 0x65) upper[i] = 0x45; // 0x20 case randomisation
    const long = [
      rr(nameBytes("www.example.com"), 5, nameBytes("edge.cdn.net")),
      rr(nameBytes("edge.cdn.net"), 1, Buffer.from([10, 0, 0, 7])),
      rr(nameBytes("www.example.com"), 1, Buffer.from([10, 0, 0, 8])),
    ];
    const short = [
      rr(PTR, 5, nameBytes("edge.cdn.net")),
      rr(nameBytes("edge.cdn.net"), 1, Buffer.from([10, 0, 0, 7])),
      rr(PTR, 1, Buffer.from([10, 0, 0, 8])),
    ];
    const want = readAnswer(answer(q, question, long), q);
    assert.ok(want.ok && want.ips.length === 2, JSON.stringify(want));
    assert.deepEqual(readAnswer(answer(q, question, short), q), want);
    assert.deepEqual(readAnswer(answer(q, upper, short), q), want, "the question echoed in another case");
    // Labels before the pointer: "alias." + the question's name, another name than the query's.
    const alias = cat([5], Buffer.from("alias"), PTR);
    const other = readAnswer(answer(q, question, [rr(alias, 1, Buffer.from([10, 0, 0, 9]))]), q);
    assert.deepEqual(
      other.ok ? other.ips : ["not ok"],
      [],
      "an address of alias.www.example.com is not the query's",
    );
    const viaAlias = readAnswer(answer(q, question, [rr(PTR, 5, alias), rr(alias, 1, Buffer.from([10, 0, 0, 9]))]), q); // prettier-ignore
    assert.ok(viaAlias.ok);
    assert.deepEqual(viaAlias.ok ? [viaAlias.ips, viaAlias.cnames] : [], [
      ["10.0.0.9"],
      ["alias.www.example.com."],
    ]);
    // Over 255 bytes once the question's name is added: refused as the written-out name would be.
    const big = cat(...Array.from({ length: 4 }, () => cat([60], Buffer.alloc(60, 0x61))), PTR);
    const tooLong = readAnswer(answer(q, question, [rr(big, 1, Buffer.from([10, 0, 0, 1]))]), q);
    assert.equal(tooLong.ok, false);
  });

  test("the question's type and class are compared exactly (only the name's letters may differ in case)", () => {
    const q = ask("a.example.com", 0x41); // HTTPS: the byte 0x41 is the letter A
    const other = Buffer.from(q.question);
    other[other.length - 3] = 0x61; // type 0x0061, not 0x0041
    const r = readAnswer(answer(q, other, []), q);
    assert.deepEqual(r, { ok: false, reason: "answer is for another question" });
    assert.equal(readAnswer(answer(q, q.question, []), q).ok, true);
  });

  test("verdicts per (policy spec, name): cached, and a new spec (policy change) is judged anew", () => {
    const policy = (dns: DnsRule[], extra: Partial<L7LookupResult> = {}): L7LookupResult => ({
      spec: { parser: "dns", http: [], dns, kafka: [], serverNames: [] },
      allowAll: false,
      ...extra,
    });
    const v = new DnsVerdicts(2);
    const p1 = policy([{ matchPattern: "*.example.com" }]);
    assert.equal(v.admits(p1, "api.example.com."), true);
    assert.equal(v.admits(p1, "api.example.com."), true, "from the cache");
    assert.equal(v.admits(p1, "example.com."), false);
    assert.equal(v.admits(p1, "evil.com."), false, "past maxNames the cache starts over, still right");
    assert.equal(v.admits(p1, "api.example.com."), true);
    // The policy changed: the lookup gives a new spec; the same name gets the new rules' verdict.
    const p2 = policy([{ matchName: "example.com" }]);
    assert.equal(v.admits(p2, "api.example.com."), false);
    assert.equal(v.admits(p2, "example.com."), true);
    // Both stages must admit (the client's egress and the server's ingress); allowAll admits all.
    assert.equal(v.admits(policy([{ matchPattern: "*" }], { also: p2 }), "api.example.com."), false);
    assert.equal(v.admits(policy([], { allowAll: true }), "anything.org."), true);
  });
  test("a name's presentation: letters lowercased, plain labels as read, any other byte escaped as \\DDD", () => {
    const labels = (...ls: (string | number[])[]): Buffer =>
      cat(...ls.map((l) => (typeof l === "string" ? Buffer.from(l, "latin1") : Buffer.from(l))).map((l) => cat([l.length], l)), [0]); // prettier-ignore
    const cases: { name: string; wire: Buffer; want: string }[] = [
      { name: "plain labels", wire: labels("a_b-9", "example", "com"), want: "a_b-9.example.com." },
      { name: "upper case", wire: labels("WwW", "Example", "COM"), want: "www.example.com." },
      { name: "a dot inside a label", wire: labels([0x61, 0x2e, 0x62], "com"), want: "a\\046b.com." },
      { name: "space, NUL and 0xff", wire: labels([0x20, 0x00, 0xff], "X"), want: "\\032\\000\\255.x." },
      { name: "upper case after a plain run", wire: labels("abcD"), want: "abcd." },
      { name: "the root", wire: Buffer.from([0]), want: "." },
    ];
    for (const c of cases) {
      const r = parseQuery(cat([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0], c.wire, [0, 1, 0, 1]));
      assert.equal(r.kind, "ok", c.name);
      assert.equal((r as { query: Query }).query.name, c.want, c.name);
    }
  });

  test("a name asked again is the name of those bytes: the same bytes as the query before or not", () => {
    const nameOf = (name: string): string => {
      const r = parseQuery(queryWith(name, 0, Buffer.alloc(0)));
      assert.equal(r.kind, "ok", name);
      return (r as { query: Query }).query.name;
    };
    // Equal wire lengths, each differing from the one before in one byte (a letter's case too).
    const asked: [string, string][] = [
      ["api.example.com", "api.example.com."],
      ["api.example.com", "api.example.com."],
      ["apx.example.com", "apx.example.com."],
      ["API.example.com", "api.example.com."],
      ["api.example.con", "api.example.con."],
      ["api.example.com", "api.example.com."],
      ["a\\x.example.com", "a\\092x.example.com."],
      ["ab.cexample.com", "ab.cexample.com."],
      ["api.example.com", "api.example.com."],
    ];
    for (const [wire, want] of asked) assert.equal(nameOf(wire), want, wire);
  });
});
