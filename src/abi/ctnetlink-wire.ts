/**
 * ctnetlink as bytes, the parts every conntrack request and answer share:
 * constants, attribute encoding, a tuple request builder and a strict parser
 * of one entry (IPCTNL_MSG_CT_NEW). Pure; no sockets here. Used by the
 * proxy's original-destination lookup (proxy/conntrack/) and by the
 * datapath's conntrack dump and delete (ctnetlink/dump.ts).
 *
 *   tupleRequest(type, flags, seq, tupleAttr, tuple) --> {ok, message} | {ok: false, reason}
 *   bytes of one IPCTNL_MSG_CT_NEW --parseEntryBody--> {original, mark?, id?} | reason
 *
 * Netlink and attribute headers are host byte order (little-endian on every
 * platform we run on); ctnetlink attribute values are big-endian. Constants
 * checked against include/uapi/linux/netfilter/nfnetlink_conntrack.h and
 * nfnetlink.h.
 *
 * The parser reads untrusted bytes: every length is checked against the end of
 * its enclosing message or attribute, it descends only the three fixed levels
 * it needs (so no recursion to exhaust), and it never throws.
 */
import { endianness } from "node:os";
import { addressBytes, addressText } from "./ctnetlink-address.js";

const HOST_LE = endianness() === "LE";

export const NETLINK_NETFILTER = 12;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const NFNL_SUBSYS_CTNETLINK = 1;
/** nlmsg types: (subsystem << 8) | IPCTNL_MSG_CT_NEW (0) / _GET (1) / _DELETE (2). */
export const CT_NEW = (NFNL_SUBSYS_CTNETLINK << 8) | 0;
export const CT_GET = (NFNL_SUBSYS_CTNETLINK << 8) | 1;
export const CT_DELETE = (NFNL_SUBSYS_CTNETLINK << 8) | 2;
export const NLMSG_NOOP = 1;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;
export const NLM_F_REQUEST = 1;
export const NLM_F_MULTI = 2;
export const NLM_F_ACK = 4;
/** NLM_F_ROOT | NLM_F_MATCH */
export const NLM_F_DUMP = 0x300;
export const NLA_F_NESTED = 0x8000;
const NLA_TYPE_MASK = 0x3fff;

/** enum ctattr_type */
export const CTA = { tupleOrig: 1, tupleReply: 2, mark: 8, id: 12, markMask: 21 } as const;
/** enum ctattr_tuple */
export const CTA_TUPLE = { ip: 1, proto: 2 } as const;
/** enum ctattr_ip */
export const CTA_IP = { v4Src: 1, v4Dst: 2, v6Src: 3, v6Dst: 4 } as const;
/** enum ctattr_l4proto */
export const CTA_PROTO = { num: 1, srcPort: 2, dstPort: 3 } as const;

export const NLMSG_HDRLEN = 16;
export const NFGEN_HDRLEN = 4;

/** A tuple as the caller names it: addresses as text, ports as numbers. */
export interface TupleQuery {
  /** IP protocol number (6 TCP, 17 UDP). */
  proto: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
}

/** A tuple read from the kernel. Addresses in Node's text form (IPv6 per RFC 5952). */
export interface Tuple extends TupleQuery {
  family: 4 | 6;
}

export type RequestResult =
  | { readonly ok: true; readonly message: Buffer; readonly family: 4 | 6 }
  | { readonly ok: false; readonly reason: string };

export function attr(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  b.set(value, 4);
  return b;
}

export const nest = (type: number, children: Buffer[]): Buffer =>
  attr(type | NLA_F_NESTED, Buffer.concat(children));

export function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
}

export function be32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** A netlink + nfgenmsg header for a message whose attributes are `body`. */
export function header(type: number, flags: number, seq: number, family: 4 | 6, bodyLength: number): Buffer {
  const h = Buffer.alloc(NLMSG_HDRLEN + NFGEN_HDRLEN);
  h.writeUInt32LE(h.length + bodyLength, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(0, 12); // nlmsg_pid: the kernel fills in our port
  h.writeUInt8(family === 4 ? AF_INET : AF_INET6, 16);
  h.writeUInt8(0, 17); // NFNETLINK_V0
  h.writeUInt16BE(0, 18); // res_id
  return h;
}

const isPort = (p: number): boolean => Number.isInteger(p) && p >= 0 && p <= 0xffff;

/**
 * A ctnetlink request of `type` (CT_GET, CT_DELETE) naming one entry by
 * `tuple`, given as attribute `tupleAttr` (CTA.tupleOrig or CTA.tupleReply).
 */
export function tupleRequest(
  type: number,
  flags: number,
  seq: number,
  tupleAttr: number,
  tuple: TupleQuery,
): RequestResult {
  if (!Number.isInteger(seq) || seq < 0 || seq > 0xffffffff)
    return { ok: false, reason: `sequence number ${seq} is not a u32` };
  if (!Number.isInteger(tuple.proto) || tuple.proto < 0 || tuple.proto > 255)
    return { ok: false, reason: `protocol ${tuple.proto} is not a u8` };
  if (!isPort(tuple.srcPort)) return { ok: false, reason: `source port ${tuple.srcPort} is not 0-65535` };
  if (!isPort(tuple.dstPort))
    return { ok: false, reason: `destination port ${tuple.dstPort} is not 0-65535` };
  const src = addressBytes(tuple.src);
  if (!src) return { ok: false, reason: `source ${JSON.stringify(tuple.src)} is not an IP address` };
  const dst = addressBytes(tuple.dst);
  if (!dst) return { ok: false, reason: `destination ${JSON.stringify(tuple.dst)} is not an IP address` };
  if (src.family !== dst.family)
    return {
      ok: false,
      reason: `source ${tuple.src} and destination ${tuple.dst} are of different IP families`,
    };
  const v4 = src.family === 4;
  const body = nest(tupleAttr, [
    nest(CTA_TUPLE.ip, [
      attr(v4 ? CTA_IP.v4Src : CTA_IP.v6Src, src.bytes),
      attr(v4 ? CTA_IP.v4Dst : CTA_IP.v6Dst, dst.bytes),
    ]),
    nest(CTA_TUPLE.proto, [
      attr(CTA_PROTO.num, Uint8Array.of(tuple.proto)),
      attr(CTA_PROTO.srcPort, be16(tuple.srcPort)),
      attr(CTA_PROTO.dstPort, be16(tuple.dstPort)),
    ]),
  ]);
  const h = header(type, flags, seq, src.family, body.length);
  return { ok: true, message: Buffer.concat([h, body]), family: src.family };
}

/**
 * Calls `visit(type, valueStart, valueEnd)` for each attribute in [start, end).
 * Returns a reason when an attribute header is short, zero-length or runs past
 * `end`, or when `visit` returns one.
 */
export function walk(
  b: Buffer,
  start: number,
  end: number,
  where: string,
  visit: (type: number, v: number, vend: number) => string | undefined,
): string | undefined {
  let o = start;
  while (o < end) {
    if (end - o < 4) return `${where}: ${end - o} trailing bytes at offset ${o}, too short for an attribute`;
    const len = b.readUInt16LE(o);
    if (len < 4) return `${where}: attribute at offset ${o} has length ${len}, below the 4-byte header`;
    if (len > end - o)
      return `${where}: attribute at offset ${o} claims ${len} bytes, only ${end - o} remain`;
    const why = visit(b.readUInt16LE(o + 2) & NLA_TYPE_MASK, o + 4, o + len);
    if (why !== undefined) return why;
    o += (len + 3) & ~3;
  }
  return undefined;
}

interface TupleParts {
  src?: string;
  dst?: string;
  proto?: number;
  srcPort?: number;
  dstPort?: number;
}

function parseIp(b: Buffer, start: number, end: number, family: 4 | 6, t: TupleParts): string | undefined {
  return walk(b, start, end, "CTA_TUPLE_IP", (type, v, vend) => {
    const isSrc = type === CTA_IP.v4Src || type === CTA_IP.v6Src;
    if (!isSrc && type !== CTA_IP.v4Dst && type !== CTA_IP.v6Dst) return undefined;
    const want = type === CTA_IP.v4Src || type === CTA_IP.v4Dst ? 4 : 6;
    if (want !== family) return `CTA_TUPLE_IP: an IPv${want} address (type ${type}) in an IPv${family} entry`;
    if (vend - v !== (family === 4 ? 4 : 16))
      return `CTA_TUPLE_IP: address type ${type} has ${vend - v} bytes, not ${family === 4 ? 4 : 16}`;
    if ((isSrc ? t.src : t.dst) !== undefined) return `CTA_TUPLE_IP: address type ${type} appears twice`;
    const text = addressText(b.subarray(v, vend));
    if (isSrc) t.src = text;
    else t.dst = text;
    return undefined;
  });
}

function parseProto(b: Buffer, start: number, end: number, t: TupleParts): string | undefined {
  return walk(b, start, end, "CTA_TUPLE_PROTO", (type, v, vend) => {
    if (type === CTA_PROTO.num) {
      if (vend - v !== 1) return `CTA_PROTO_NUM has ${vend - v} bytes, not 1`;
      if (t.proto !== undefined) return "CTA_PROTO_NUM appears twice";
      t.proto = b.readUInt8(v);
    } else if (type === CTA_PROTO.srcPort || type === CTA_PROTO.dstPort) {
      const name = type === CTA_PROTO.srcPort ? "CTA_PROTO_SRC_PORT" : "CTA_PROTO_DST_PORT";
      if (vend - v !== 2) return `${name} has ${vend - v} bytes, not 2`;
      const key = type === CTA_PROTO.srcPort ? "srcPort" : "dstPort";
      if (t[key] !== undefined) return `${name} appears twice`;
      t[key] = b.readUInt16BE(v);
    }
    return undefined;
  });
}

function parseTuple(b: Buffer, start: number, end: number, family: 4 | 6): Tuple | string {
  const t: TupleParts = {};
  let sawIp = false;
  let sawProto = false;
  const why = walk(b, start, end, "CTA_TUPLE_ORIG", (type, v, vend) => {
    if (type === CTA_TUPLE.ip) {
      if (sawIp) return "CTA_TUPLE_ORIG: CTA_TUPLE_IP appears twice";
      sawIp = true;
      return parseIp(b, v, vend, family, t);
    }
    if (type === CTA_TUPLE.proto) {
      if (sawProto) return "CTA_TUPLE_ORIG: CTA_TUPLE_PROTO appears twice";
      sawProto = true;
      return parseProto(b, v, vend, t);
    }
    return undefined;
  });
  if (why !== undefined) return why;
  const { src, dst, proto, srcPort, dstPort } = t;
  if (src === undefined || dst === undefined) return "CTA_TUPLE_ORIG lacks a source or destination address";
  if (proto === undefined) return "CTA_TUPLE_ORIG lacks CTA_PROTO_NUM";
  if (srcPort === undefined || dstPort === undefined)
    return "CTA_TUPLE_ORIG lacks a source or destination port";
  return { family, proto, src, srcPort, dst, dstPort };
}
/** What one IPCTNL_MSG_CT_NEW says: the original tuple, and the ct mark and id when the kernel sent them. */
export interface EntryBody {
  original: Tuple;
  mark?: number;
  /** CTA_ID: the entry's id, as nft's `ct id` reads it (a keyed hash of the entry; the proxy's DNS cache). */
  id?: number;
}

/** Parses the body (nfgenmsg + attributes) of one IPCTNL_MSG_CT_NEW in [start, end); a reason when malformed. */
export function parseEntryBody(b: Buffer, start: number, end: number): EntryBody | string {
  if (end - start < NFGEN_HDRLEN) return "IPCTNL_MSG_CT_NEW is too short for its nfgenmsg header";
  const fam = b.readUInt8(start);
  if (fam !== AF_INET && fam !== AF_INET6) return `nfgenmsg family ${fam} is neither AF_INET nor AF_INET6`;
  if (b.readUInt8(start + 1) !== 0) return `nfgenmsg version ${b.readUInt8(start + 1)} is not 0`;
  const family = fam === AF_INET ? 4 : 6;
  let original: Tuple | undefined;
  let mark: number | undefined;
  let id: number | undefined;
  const why = walk(b, start + NFGEN_HDRLEN, end, "IPCTNL_MSG_CT_NEW", (type, v, vend) => {
    if (type === CTA.tupleOrig) {
      if (original) return "CTA_TUPLE_ORIG appears twice";
      const t = parseTuple(b, v, vend, family);
      if (typeof t === "string") return t;
      original = t;
    } else if (type === CTA.mark) {
      if (vend - v !== 4) return `CTA_MARK has ${vend - v} bytes, not 4`;
      if (mark !== undefined) return "CTA_MARK appears twice";
      mark = b.readUInt32BE(v);
    } else if (type === CTA.id) {
      if (vend - v !== 4) return `CTA_ID has ${vend - v} bytes, not 4`;
      if (id !== undefined) return "CTA_ID appears twice";
      // Unlike every other value here, host byte order: the kernel puts nf_ct_get_id()'s u32
      // as it is (`(__force __be32)`, ctnetlink_dump_id). Read so, it equals nft's `ct id`.
      id = HOST_LE ? b.readUInt32LE(v) : b.readUInt32BE(v);
    }
    return undefined;
  });
  if (why !== undefined) return why;
  if (!original) return "IPCTNL_MSG_CT_NEW lacks CTA_TUPLE_ORIG";
  const e: EntryBody = { original };
  if (mark !== undefined) e.mark = mark;
  if (id !== undefined) e.id = id;
  return e;
}

/** One netlink message of a ctnetlink answer, read as far as the netlink layer goes. */
export type CtFrame =
  /** IPCTNL_MSG_CT_NEW: the entry's body (nfgenmsg + attributes) is [body, end) of the buffer. */
  | { readonly kind: "entry"; readonly seq: number; readonly body: number; readonly end: number }
  | { readonly kind: "done"; readonly seq: number }
  /** NLMSG_ERROR: errno as a positive number (2 ENOENT: no such entry); 0 is a plain ACK. */
  | { readonly kind: "error"; readonly seq: number; readonly errno: number }
  /** Malformed or unexpected; `seq` when the netlink header itself was readable. */
  | { readonly kind: "invalid"; readonly seq?: number; readonly reason: string };

/**
 * Every netlink message of one datagram, in order, with the buffer they
 * index. Stops at the first broken netlink header; never throws. The one
 * walker of untrusted ctnetlink bytes (the proxy's lookups, the datapath's dumps).
 */
export function ctnetlinkFrames(datagram: Uint8Array): { readonly buf: Buffer; readonly frames: CtFrame[] } {
  const b = Buffer.isBuffer(datagram)
    ? datagram
    : Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const frames: CtFrame[] = [];
  let o = 0;
  while (o < b.length) {
    if (b.length - o < NLMSG_HDRLEN) {
      frames.push({
        kind: "invalid",
        reason: `${b.length - o} trailing bytes, too short for a netlink header`,
      });
      break;
    }
    const len = b.readUInt32LE(o);
    const type = b.readUInt16LE(o + 4);
    const seq = b.readUInt32LE(o + 8);
    if (len < NLMSG_HDRLEN || len > b.length - o) {
      frames.push({
        kind: "invalid",
        seq,
        reason: `netlink message length ${len} at offset ${o} is out of bounds`,
      });
      break;
    }
    const body = o + NLMSG_HDRLEN;
    const end = o + len;
    if (type === CT_NEW) frames.push({ kind: "entry", seq, body, end });
    else if (type === NLMSG_DONE) frames.push({ kind: "done", seq });
    else if (type === NLMSG_ERROR) {
      if (end - body < 4)
        frames.push({ kind: "invalid", seq, reason: "NLMSG_ERROR is too short for its error code" });
      else {
        const err = b.readInt32LE(body);
        if (err > 0)
          frames.push({ kind: "invalid", seq, reason: `NLMSG_ERROR carries a positive error ${err}` });
        else frames.push({ kind: "error", seq, errno: err === 0 ? 0 : -err });
      }
    } else if (type !== NLMSG_NOOP) {
      frames.push({ kind: "invalid", seq, reason: `unexpected netlink message type 0x${type.toString(16)}` });
    }
    o += (len + 3) & ~3;
  }
  return { buf: b, frames };
}
