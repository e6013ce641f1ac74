/**
 * NFLOG over netlink, as bytes: the config requests that bind a log group,
 * and the parser of what the kernel sends back. Pure; no sockets here.
 *
 *   configRequests(group, opts) --> [bind msg, mode msg]    (type (4<<8)|1, NFULNL_MSG_CONFIG)
 *   datagram --parseNetlink--> {events: NflogEvent[], acks, invalid}
 *
 * Netlink headers and attribute headers are host byte order (little-endian
 * here); NFLOG attribute values are big-endian (kernel-notes.md).
 */

export const NETLINK_NETFILTER = 12;
const NFNL_SUBSYS_ULOG = 4;
export const NFULNL_MSG_PACKET = (NFNL_SUBSYS_ULOG << 8) | 0;
export const NFULNL_MSG_CONFIG = (NFNL_SUBSYS_ULOG << 8) | 1;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
const NLM_F_ACK = 4;

/** NFULA_* attribute numbers of a packet message. */
const A = { hdr: 1, mark: 2, timestamp: 3, indev: 4, outdev: 5, payload: 9, prefix: 10, seq: 12 } as const;
/** NFULA_CFG_* attribute numbers. */
const CFG = { cmd: 1, mode: 2, nlbufsiz: 3, timeout: 4, qthresh: 5, flags: 6 } as const;
const CMD_BIND = 1;
const COPY_PACKET = 2;
const FLAG_SEQ = 0x0001;

/** One logged packet, as the kernel reported it. */
export interface NflogEvent {
  /** The rule's log prefix, without its trailing NUL. */
  prefix: string;
  /** The packet from its IP header, cut at the copy range (a view into the datagram). */
  packet: Buffer;
  /** Milliseconds since the epoch: the kernel's packet timestamp when present, else when it was read. */
  timestampMs: number;
  /** The packet mark (Membrane: the peer's identity in its low 25 bits). */
  mark?: number;
  /** Interface indexes the packet came in on / was going out of. */
  indev?: number;
  outdev?: number;
  /** Ethertype of the packet (0x0800 IPv4, 0x86dd IPv6). */
  hwProtocol?: number;
  /** Per-group sequence number (NFULA_SEQ): gaps mean the kernel lost events. */
  seq?: number;
}

export interface NflogConfig {
  /** Bytes of each packet to copy (from the IP header). Default 256: enough for any header chain we decode. */
  copyRange?: number;
  /** Events the kernel batches into one message before sending. Default 16. */
  qthreshold?: number;
  /** Longest a partial batch waits, in ms (kernel unit 10 ms). Default 50. */
  flushTimeoutMs?: number;
  /** Kernel-side batch buffer in bytes. Default 65536. */
  nlbufsiz?: number;
}

function attr(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  b.set(value, 4);
  return b;
}

function be32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

function message(type: number, seq: number, group: number, attrs: Buffer[]): Buffer {
  const body = Buffer.concat(attrs);
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  h.writeUInt32LE(0, 12);
  h.writeUInt8(0, 16); // AF_UNSPEC
  h.writeUInt8(0, 17); // NFNETLINK_V0
  h.writeUInt16BE(group, 18); // res_id: the group, big-endian
  return Buffer.concat([h, body]);
}

/** The two config requests: bind the group, then copy mode, batching and sequence numbers. */
export function configRequests(group: number, firstSeq: number, opts: NflogConfig = {}): Buffer[] {
  const mode = Buffer.alloc(6);
  mode.writeUInt32BE(opts.copyRange ?? 256, 0);
  mode.writeUInt8(COPY_PACKET, 4);
  const flags = Buffer.alloc(2);
  flags.writeUInt16BE(FLAG_SEQ, 0);
  return [
    message(NFULNL_MSG_CONFIG, firstSeq, group, [attr(CFG.cmd, Uint8Array.of(CMD_BIND))]),
    message(NFULNL_MSG_CONFIG, firstSeq + 1, group, [
      attr(CFG.mode, mode),
      attr(CFG.nlbufsiz, be32(opts.nlbufsiz ?? 65536)),
      attr(CFG.timeout, be32(Math.max(1, Math.round((opts.flushTimeoutMs ?? 50) / 10)))),
      attr(CFG.qthresh, be32(opts.qthreshold ?? 16)),
      attr(CFG.flags, flags),
    ]),
  ];
}

export interface ParsedDatagram {
  events: NflogEvent[];
  /** NLMSG_ERROR answers: seq of the request and errno (0 = ACK). */
  acks: { seq: number; errno: number }[];
  /** Messages that were malformed or cut short and were skipped. */
  invalid: number;
}

const EMPTY = Buffer.alloc(0);

function parsePacket(b: Buffer, start: number, end: number, recvMs: number): NflogEvent | undefined {
  const ev: NflogEvent = { prefix: "", packet: EMPTY, timestampMs: recvMs };
  let o = start;
  let sawPayload = false;
  while (o + 4 <= end) {
    const len = b.readUInt16LE(o);
    const type = b.readUInt16LE(o + 2) & 0x3fff;
    if (len < 4 || o + len > end) return undefined;
    const v = o + 4;
    const vlen = len - 4;
    switch (type) {
      case A.hdr:
        if (vlen >= 2) ev.hwProtocol = b.readUInt16BE(v);
        break;
      case A.mark:
        if (vlen >= 4) ev.mark = b.readUInt32BE(v);
        break;
      case A.timestamp:
        if (vlen >= 16) {
          const ms = Number(b.readBigUInt64BE(v)) * 1000 + Number(b.readBigUInt64BE(v + 8)) / 1000;
          if (ms > 0) ev.timestampMs = ms;
        }
        break;
      case A.indev:
        if (vlen >= 4) ev.indev = b.readUInt32BE(v);
        break;
      case A.outdev:
        if (vlen >= 4) ev.outdev = b.readUInt32BE(v);
        break;
      case A.payload:
        ev.packet = b.subarray(v, v + vlen);
        sawPayload = true;
        break;
      case A.prefix: {
        const nul = b.indexOf(0, v);
        ev.prefix = b.toString("latin1", v, nul >= v && nul < v + vlen ? nul : v + vlen);
        break;
      }
      case A.seq:
        if (vlen >= 4) ev.seq = b.readUInt32BE(v);
        break;
    }
    o += (len + 3) & ~3;
  }
  return sawPayload ? ev : undefined;
}

/** Parses every netlink message of one datagram; malformed parts are counted, never thrown. */
export function parseNetlink(b: Buffer, recvMs: number): ParsedDatagram {
  const out: ParsedDatagram = { events: [], acks: [], invalid: 0 };
  let o = 0;
  while (o + 16 <= b.length) {
    const len = b.readUInt32LE(o);
    if (len < 16 || o + len > b.length) {
      out.invalid++;
      break;
    }
    const type = b.readUInt16LE(o + 4);
    if (type === NLMSG_ERROR && len >= 20) {
      out.acks.push({ seq: len >= 28 ? b.readUInt32LE(o + 16 + 4 + 8) : 0, errno: -b.readInt32LE(o + 16) });
    } else if (type === NFULNL_MSG_PACKET) {
      const ev = len >= 20 ? parsePacket(b, o + 20, o + len, recvMs) : undefined;
      if (ev) out.events.push(ev);
      else out.invalid++;
    }
    o += (len + 3) & ~3;
  }
  return out;
}
