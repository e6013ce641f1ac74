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

/**
 * Address texts by value: a node sees few addresses, and a flow that keeps its own copy of each
 * (it lives in the ring) is garbage the collector copies. A direct-mapped cache of 16,384 slots
 * (no Map, no hashing of a key object): a slot holds the last address that hashed there.
 */
const V4_SLOTS = 16384;
const v4Keys = new Int32Array(V4_SLOTS);
const v4Texts: (string | undefined)[] = new Array<string | undefined>(V4_SLOTS).fill(undefined);

export function ipv4String(b: Uint8Array, o: number): string {
  const v = ((b[o] as number) << 24) | ((b[o + 1] as number) << 16) | ((b[o + 2] as number) << 8) | (b[o + 3] as number); // prettier-ignore
  const i = Math.imul(v, 0x9e3779b1) >>> 18; // the top 14 bits of a multiplicative hash
  const t = v4Texts[i];
  if (t !== undefined && v4Keys[i] === v) return t;
  const text = `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  v4Keys[i] = v;
  v4Texts[i] = text;
  return text;
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

/** The 512 flag combinations, each one frozen object (shared by every flow that has it) and its summary. */
const FLAG_SETS: { flags: TCPFlags; summary: string }[] = [];
for (let i = 0; i < 512; i++) {
  const f: TCPFlags = {};
  for (const [name, bit] of TCP_FLAG_BITS) if (i & bit) f[name] = true;
  if (i & 0x100) f.NS = true;
  const names = Object.keys(f);
  FLAG_SETS.push({
    flags: Object.freeze(f),
    summary: names.length === 0 ? "TCP" : `TCP Flags: ${names.join(", ")}`,
  });
}
const flagSet = (byte13: number, byte12: number): { flags: TCPFlags; summary: string } =>
  FLAG_SETS[(byte13 & 0xff) | ((byte12 & 0x01) << 8)] as { flags: TCPFlags; summary: string };
/** Shared flag object -> its summary (decoded flows carry the shared objects). */
const SUMMARY_OF = new Map<TCPFlags, string>(FLAG_SETS.map((x) => [x.flags, x.summary]));

/** Hubble's summary text of an L4 header. */
export function summarize(l4: Layer4 | undefined, proto: number): string {
  if (l4 === undefined) return `IP protocol ${proto}`;
  if ("TCP" in l4) {
    const f = l4.TCP.flags;
    if (f === undefined) return "TCP";
    const shared = SUMMARY_OF.get(f);
    if (shared !== undefined) return shared;
    let i = 0;
    for (const [name, bit] of TCP_FLAG_BITS) if (f[name] === true) i |= bit;
    if (f.NS === true) i |= 0x100;
    return (FLAG_SETS[i] as { summary: string }).summary;
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
      return left >= 14
        ? {
            TCP: {
              source_port: u16(o),
              destination_port: u16(o + 2),
              flags: flagSet(b[o + 13] ?? 0, b[o + 12] ?? 0).flags,
            },
          }
        : { TCP: { source_port: u16(o), destination_port: u16(o + 2) } };
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
