/**
 * Hand-built transport headers for the attack-case tests (bare TCP ACK/RST,
 * ICMP echo-reply without a request, SCTP INIT), sent with
 * `socat -u - IP4-SENDTO:dst:proto` so the kernel adds the IP header.
 */
import { parseAddr } from "../../src/labels/cidr.js";

function addrBytes(a: string): Buffer {
  const p = parseAddr(a);
  if (!p) throw new Error(`not an address: ${a}`);
  const n = p.family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Number((p.value >> BigInt(8 * (n - 1 - i))) & 0xffn);
  return b;
}

function onesSum(buf: Buffer): number {
  let sum = 0;
  for (let i = 0; i < buf.length; i += 2) sum += (buf[i] ?? 0) * 256 + (buf[i + 1] ?? 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function pseudo(src: string, dst: string, proto: number, len: number): Buffer {
  const s = addrBytes(src);
  const d = addrBytes(dst);
  if (s.length === 4) {
    const t = Buffer.alloc(4);
    t[1] = proto;
    t.writeUInt16BE(len, 2);
    return Buffer.concat([s, d, t]);
  }
  const t = Buffer.alloc(8);
  t.writeUInt32BE(len, 0);
  t[7] = proto;
  return Buffer.concat([s, d, t]);
}

export const TCP_FLAGS = { fin: 1, syn: 2, rst: 4, psh: 8, ack: 16 } as const;

/** A 20-byte TCP header with a valid checksum. */
export function tcpSegment(src: string, dst: string, sport: number, dport: number, flags: number): Buffer {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(sport, 0);
  h.writeUInt16BE(dport, 2);
  h.writeUInt32BE(0x12345678, 4);
  h.writeUInt32BE(0x9abcdef0, 8);
  h[12] = 5 << 4;
  h[13] = flags;
  h.writeUInt16BE(64240, 14);
  h.writeUInt16BE(onesSum(Buffer.concat([pseudo(src, dst, 6, 20), h])), 16);
  return h;
}

/** A UDP datagram (8-byte header + payload) with a valid checksum (IPv6 needs one). */
export function udpDatagram(src: string, dst: string, sport: number, dport: number, payload: string): Buffer {
  const h = Buffer.alloc(8);
  const d = Buffer.concat([h, Buffer.from(payload)]);
  d.writeUInt16BE(sport, 0);
  d.writeUInt16BE(dport, 2);
  d.writeUInt16BE(d.length, 4);
  d.writeUInt16BE(onesSum(Buffer.concat([pseudo(src, dst, 17, d.length), d])) || 0xffff, 6);
  return d;
}

/** ICMP (v4) echo message; type 0 = reply, 8 = request. ICMPv6 checksums are filled in by the kernel. */
export function icmpEcho(type: number, v6: boolean): Buffer {
  const h = Buffer.alloc(16);
  h[0] = type;
  h.writeUInt16BE(0x4242, 4);
  h.writeUInt16BE(1, 6);
  h.write("membrane", 8);
  if (!v6) h.writeUInt16BE(onesSum(h), 2);
  return h;
}

const CRC32C = ((): Uint32Array => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

function crc32c(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = (CRC32C[(c ^ b) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** An SCTP packet holding one INIT chunk (verification tag 0), with its CRC32c. */
export function sctpInit(sport: number, dport: number): Buffer {
  const p = Buffer.alloc(32);
  p.writeUInt16BE(sport, 0);
  p.writeUInt16BE(dport, 2);
  p[12] = 1; // INIT
  p.writeUInt16BE(20, 14);
  p.writeUInt32BE(0xcafe0001, 16); // initiate tag
  p.writeUInt32BE(65536, 20); // a_rwnd
  p.writeUInt16BE(1, 24);
  p.writeUInt16BE(1, 26);
  p.writeUInt32BE(1, 28); // initial TSN
  p.writeUInt32LE(crc32c(p), 8);
  return p;
}
