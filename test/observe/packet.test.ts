import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { decodePacket, ipv6String } from "../../src/observe/packet.js";
import { icmpHeader, ipv4, ipv6, tcpHeader, udpHeader } from "./fixtures.js";

const SYN = 0x02;
const SYN_ACK = 0x12;

describe("decodePacket", () => {
  const cases: { name: string; bytes: Buffer; want: unknown }[] = [
    {
      name: "IPv4 TCP SYN gives addresses, ports and the SYN flag",
      bytes: ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(43210, 80, SYN)),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
        proto: 6,
        l4: { TCP: { source_port: 43210, destination_port: 80, flags: { SYN: true } } },
        summary: "TCP Flags: SYN",
      },
    },
    {
      name: "TCP SYN-ACK lists flags in Hubble's order",
      bytes: ipv4("10.0.0.12", "10.0.0.13", 6, tcpHeader(80, 43210, SYN_ACK)),
      want: {
        ok: true,
        IP: { source: "10.0.0.12", destination: "10.0.0.13", ipVersion: "IPv4" },
        proto: 6,
        l4: { TCP: { source_port: 80, destination_port: 43210, flags: { SYN: true, ACK: true } } },
        summary: "TCP Flags: SYN, ACK",
      },
    },
    {
      name: "IPv4 UDP",
      bytes: ipv4("10.0.0.13", "10.96.0.10", 17, udpHeader(5353, 53)),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.96.0.10", ipVersion: "IPv4" },
        proto: 17,
        l4: { UDP: { source_port: 5353, destination_port: 53 } },
        summary: "UDP",
      },
    },
    {
      name: "IPv4 ICMP echo request",
      bytes: ipv4("10.0.0.13", "10.0.0.12", 1, icmpHeader(8, 0)),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
        proto: 1,
        l4: { ICMPv4: { type: 8, code: 0 } },
        summary: "ICMPv4 EchoRequest",
      },
    },
    {
      name: "SCTP ports",
      bytes: ipv4("10.0.0.13", "10.0.0.12", 132, udpHeader(1000, 2000)),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
        proto: 132,
        l4: { SCTP: { source_port: 1000, destination_port: 2000 } },
        summary: "SCTP",
      },
    },
    {
      name: "a non-first IPv4 fragment has no L4 header",
      bytes: ipv4("10.0.0.13", "10.0.0.12", 17, udpHeader(1, 2), { fragOffset: 185 }),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
        proto: 17,
        summary: "IP protocol 17",
      },
    },
    {
      name: "IPv6 TCP with compressed addresses",
      bytes: ipv6("fd00::d", "fd00::c", 6, tcpHeader(40000, 443, SYN)),
      want: {
        ok: true,
        IP: { source: "fd00::d", destination: "fd00::c", ipVersion: "IPv6" },
        proto: 6,
        l4: { TCP: { source_port: 40000, destination_port: 443, flags: { SYN: true } } },
        summary: "TCP Flags: SYN",
      },
    },
    {
      name: "IPv6 UDP behind a hop-by-hop header",
      bytes: ipv6("fd00::d", "fd00::c", 17, udpHeader(1234, 53), [[0, [0, 0, 1, 4, 0, 0, 0, 0]]]),
      want: {
        ok: true,
        IP: { source: "fd00::d", destination: "fd00::c", ipVersion: "IPv6" },
        proto: 17,
        l4: { UDP: { source_port: 1234, destination_port: 53 } },
        summary: "UDP",
      },
    },
    {
      name: "IPv6 first fragment keeps its L4 header, a later one does not",
      bytes: ipv6("fd00::d", "fd00::c", 17, udpHeader(7, 9), [[44, [0, 0, 0, 1, 0, 0, 0, 9]]]),
      want: {
        ok: true,
        IP: { source: "fd00::d", destination: "fd00::c", ipVersion: "IPv6" },
        proto: 17,
        l4: { UDP: { source_port: 7, destination_port: 9 } },
        summary: "UDP",
      },
    },
    {
      name: "IPv6 non-first fragment",
      bytes: ipv6("fd00::d", "fd00::c", 17, udpHeader(7, 9), [[44, [0, 0, 0, 0x08, 0, 0, 0, 9]]]),
      want: {
        ok: true,
        IP: { source: "fd00::d", destination: "fd00::c", ipVersion: "IPv6" },
        proto: 17,
        summary: "IP protocol 17",
      },
    },
    {
      name: "ICMPv6 echo request",
      bytes: ipv6("fd00::d", "fd00::c", 58, icmpHeader(128, 0)),
      want: {
        ok: true,
        IP: { source: "fd00::d", destination: "fd00::c", ipVersion: "IPv6" },
        proto: 58,
        l4: { ICMPv6: { type: 128, code: 0 } },
        summary: "ICMPv6 EchoRequest",
      },
    },
    {
      name: "TCP cut after the ports keeps the ports without flags",
      bytes: ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(1, 2, SYN)).subarray(0, 26),
      want: {
        ok: true,
        IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
        proto: 6,
        l4: { TCP: { source_port: 1, destination_port: 2 } },
        summary: "TCP",
      },
    },
    { name: "empty input is invalid", bytes: Buffer.alloc(0), want: { ok: false, error: "empty packet" } },
    {
      name: "IP version 5 is invalid",
      bytes: Buffer.from([0x50, 0, 0, 0]),
      want: { ok: false, error: "IP version 5 is neither 4 nor 6" },
    },
    {
      name: "IPv4 header cut short is invalid",
      bytes: ipv4("1.2.3.4", "5.6.7.8", 6, []).subarray(0, 19),
      want: { ok: false, error: "IPv4 header needs 20 bytes, got 19" },
    },
    {
      name: "IPv4 IHL below 5 is invalid",
      bytes: Buffer.from([0x44, ...new Array<number>(19).fill(0)]),
      want: { ok: false, error: "IPv4 header length 16 is below 20" },
    },
    {
      name: "IPv4 IHL beyond the captured bytes is invalid",
      bytes: Buffer.from([0x4f, ...new Array<number>(39).fill(0)]),
      want: { ok: false, error: "IPv4 header length 60 exceeds the 40 bytes captured" },
    },
    {
      name: "IPv6 header cut short is invalid",
      bytes: ipv6("::1", "::2", 6, []).subarray(0, 39),
      want: { ok: false, error: "IPv6 header needs 40 bytes, got 39" },
    },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(decodePacket(c.bytes), c.want));

  test("IPv6 addresses print in RFC 5952 form", () => {
    const table: [string, number[]][] = [
      ["::", new Array<number>(16).fill(0)],
      ["::1", [...new Array<number>(15).fill(0), 1]],
      ["2001:db8::1:0:0:1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]],
      ["2001:db8:0:1:1:1:1:1", [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]],
      ["::ffff:10.1.2.3", [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]],
      ["fe80::", [0xfe, 0x80, ...new Array<number>(14).fill(0)]],
    ];
    for (const [want, bytes] of table) assert.equal(ipv6String(Uint8Array.from(bytes), 0), want);
  });

  test("random bytes never throw and always give a typed result", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (b) => {
        const r = decodePacket(b);
        return r.ok ? typeof r.summary === "string" : typeof r.error === "string";
      }),
      { numRuns: 5000 },
    );
  });

  test("random bytes behind a valid version nibble never throw", () => {
    fc.assert(
      fc.property(fc.constantFrom(0x45, 0x4f, 0x60), fc.uint8Array({ maxLength: 120 }), (first, rest) => {
        const r = decodePacket(Uint8Array.from([first, ...rest]));
        return r.ok || r.error.length > 0;
      }),
      { numRuns: 5000 },
    );
  });

  test("every truncation of a valid packet is either invalid or a consistent prefix of the full decode", () => {
    const packets = [
      ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(43210, 80, SYN)),
      ipv6("fd00::d", "fd00::c", 17, udpHeader(1234, 53), [[0, [0, 0, 1, 4, 0, 0, 0, 0]]]),
      ipv6("fd00::d", "fd00::c", 58, icmpHeader(128, 0)),
    ];
    for (const p of packets) {
      const full = decodePacket(p);
      assert.ok(full.ok);
      for (let n = 0; n <= p.length; n++) {
        const r = decodePacket(p.subarray(0, n));
        if (!r.ok) continue;
        assert.deepEqual(r.IP, full.IP, `IP of ${n} bytes`);
        if (r.l4 !== undefined && n === p.length) assert.deepEqual(r.l4, full.l4);
      }
    }
  });
});
