/**
 * Decoding of the packet an NFLOG event carries (from its IP header on).
 *
 *   bytes --decodePacket--> {ok: true, IP, l4, proto, summary} | {ok: false, error}
 *
 * The bytes are untrusted and often cut short by the copy range: every read
 * is bounds-checked, and bad input gives `{ok: false}`, never an exception.
 * A packet whose L4 header is missing (cut short, or a non-first fragment)
 * still decodes, with `l4` absent.
 */
import type { IP, Layer4, TCPFlags } from "./flow.js";

export type DecodedPacket =
  | {
      readonly ok: true;
      readonly IP: IP;
      /** IP protocol number of the transport header (after IPv6 extension headers). */
      readonly proto: number;
      readonly l4?: Layer4;
      /** Hubble-style one-line summary ("TCP Flags: SYN", "ICMPv4 EchoRequest"). */
      readonly summary: string;
    }
  | { readonly ok: false; readonly error: string };

const bad = (error: string): DecodedPacket => ({ ok: false, error });

export function ipv4String(b: Uint8Array, o: number): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** RFC 5952 text of the 16 bytes at `o` (longest run of >= 2 zero groups compressed). */
export function ipv6String(b: Uint8Array, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[o + 2 * i] ?? 0) << 8) | (b[o + 2 * i + 1] ?? 0));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  // IPv4-mapped addresses read better in their dotted form.
  if (best === 0 && bestLen === 5 && g[5] === 0xffff) return `::ffff:${ipv4String(b, o + 12)}`;
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

const TCP_FLAG_BITS: readonly [keyof TCPFlags, number][] = [
  ["FIN", 0x01],
  ["SYN", 0x02],
  ["RST", 0x04],
  ["PSH", 0x08],
  ["ACK", 0x10],
  ["URG", 0x20],
  ["ECE", 0x40],
  ["CWR", 0x80],
];

const ICMP4_TYPES: Readonly<Record<number, string>> = {
  0: "EchoReply",
  3: "DestinationUnreachable",
  5: "Redirect",
  8: "EchoRequest",
  11: "TimeExceeded",
  12: "ParameterProblem",
  13: "TimestampRequest",
  14: "TimestampReply",
};
const ICMP6_TYPES: Readonly<Record<number, string>> = {
  1: "DestinationUnreachable",
  2: "PacketTooBig",
  3: "TimeExceeded",
  4: "ParameterProblem",
  128: "EchoRequest",
  129: "EchoReply",
  133: "RouterSolicitation",
  134: "RouterAdvertisement",
  135: "NeighborSolicitation",
  136: "NeighborAdvertisement",
};

function tcpFlags(byte13: number, byte12: number): TCPFlags {
  const f: TCPFlags = {};
  for (const [name, bit] of TCP_FLAG_BITS) if (byte13 & bit) f[name] = true;
  if (byte12 & 0x01) f.NS = true;
  return f;
}

/** Hubble's summary text of an L4 header. */
export function summarize(l4: Layer4 | undefined, proto: number): string {
  if (l4 === undefined) return `IP protocol ${proto}`;
  if ("TCP" in l4) {
    const names = Object.keys(l4.TCP.flags ?? {});
    return names.length === 0 ? "TCP" : `TCP Flags: ${names.join(", ")}`;
  }
  if ("UDP" in l4) return "UDP";
  if ("SCTP" in l4) return "SCTP";
  if ("ICMPv4" in l4) return `ICMPv4 ${ICMP4_TYPES[l4.ICMPv4.type] ?? `Type(${l4.ICMPv4.type})`}`;
  return `ICMPv6 ${ICMP6_TYPES[l4.ICMPv6.type] ?? `Type(${l4.ICMPv6.type})`}`;
}

function decodeL4(b: Uint8Array, o: number, proto: number): Layer4 | undefined {
  const left = b.length - o;
  const u16 = (at: number): number => ((b[at] ?? 0) << 8) | (b[at + 1] ?? 0);
  switch (proto) {
    case 6: {
      if (left < 4) return undefined;
      const ports = { source_port: u16(o), destination_port: u16(o + 2) };
      return left >= 14
        ? { TCP: { ...ports, flags: tcpFlags(b[o + 13] ?? 0, b[o + 12] ?? 0) } }
        : { TCP: ports };
    }
    case 17:
      return left < 4 ? undefined : { UDP: { source_port: u16(o), destination_port: u16(o + 2) } };
    case 132:
      return left < 4 ? undefined : { SCTP: { source_port: u16(o), destination_port: u16(o + 2) } };
    case 1:
      return left < 2 ? undefined : { ICMPv4: { type: b[o] ?? 0, code: b[o + 1] ?? 0 } };
    case 58:
      return left < 2 ? undefined : { ICMPv6: { type: b[o] ?? 0, code: b[o + 1] ?? 0 } };
    default:
      return undefined;
  }
}

function done(ip: IP, proto: number, l4: Layer4 | undefined): DecodedPacket {
  const summary = summarize(l4, proto);
  return l4 === undefined ? { ok: true, IP: ip, proto, summary } : { ok: true, IP: ip, proto, l4, summary };
}

function decode4(b: Uint8Array): DecodedPacket {
  if (b.length < 20) return bad(`IPv4 header needs 20 bytes, got ${b.length}`);
  const ihl = ((b[0] ?? 0) & 0x0f) * 4;
  if (ihl < 20) return bad(`IPv4 header length ${ihl} is below 20`);
  if (b.length < ihl) return bad(`IPv4 header length ${ihl} exceeds the ${b.length} bytes captured`);
  const proto = b[9] ?? 0;
  const fragOffset = (((b[6] ?? 0) & 0x1f) << 8) | (b[7] ?? 0);
  const ip: IP = { source: ipv4String(b, 12), destination: ipv4String(b, 16), ipVersion: "IPv4" };
  return done(ip, proto, fragOffset === 0 ? decodeL4(b, ihl, proto) : undefined);
}

const EXT_HEADERS = new Set([0, 43, 44, 51, 60]);

function decode6(b: Uint8Array): DecodedPacket {
  if (b.length < 40) return bad(`IPv6 header needs 40 bytes, got ${b.length}`);
  const ip: IP = { source: ipv6String(b, 8), destination: ipv6String(b, 24), ipVersion: "IPv6" };
  let next = b[6] ?? 0;
  let o = 40;
  let firstFragment = true;
  for (let hops = 0; EXT_HEADERS.has(next); hops++) {
    if (hops >= 8) return bad("more than 8 IPv6 extension headers");
    if (b.length < o + 8) return done(ip, next, undefined); // cut short inside the chain
    const len = next === 44 ? 8 : next === 51 ? ((b[o + 1] ?? 0) + 2) * 4 : ((b[o + 1] ?? 0) + 1) * 8;
    if (next === 44) firstFragment = ((((b[o + 2] ?? 0) << 8) | (b[o + 3] ?? 0)) & 0xfff8) === 0;
    next = b[o] ?? 0;
    o += len;
  }
  return done(ip, next, firstFragment && o <= b.length ? decodeL4(b, o, next) : undefined);
}

/** Decodes an IP packet; never throws. */
export function decodePacket(b: Uint8Array): DecodedPacket {
  if (b.length === 0) return bad("empty packet");
  const v = (b[0] ?? 0) >> 4;
  if (v === 4) return decode4(b);
  if (v === 6) return decode6(b);
  return bad(`IP version ${v} is neither 4 nor 6`);
}
