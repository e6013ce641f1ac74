/**
 * nfnetlink_queue as bytes (NETLINK_NETFILTER, subsystem 3): the config requests that bind a
 * queue, the verdict message, and the parser of queued packets. Pure; no sockets here. Written
 * on our own netlink helpers rather than libnetfilter_queue: the agent needs four messages, and
 * a Node child with the `netlink` package's raw socket already reads NFLOG the same way.
 *
 *   configRequests(queue) --> [bind, params (copy packet, range), maxlen]   type (3<<8)|2
 *   datagram --parseQueue--> {packets: {id, mark, payload}, acks}          type (3<<8)|0
 *   verdictMessage(queue, id, verdict, mark?) --> bytes                   type (3<<8)|1
 *
 * Netlink and attribute headers are host byte order; attribute values big-endian.
 * No NFQA_CFG_F_FAIL_OPEN: a full queue drops (fail closed).
 */
import { attr, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR } from "./ctnetlink-wire.js";
const NFNL_SUBSYS_QUEUE = 3;
export const NFQNL_MSG_PACKET = (NFNL_SUBSYS_QUEUE << 8) | 0;
export const NFQNL_MSG_VERDICT = (NFNL_SUBSYS_QUEUE << 8) | 1;
export const NFQNL_MSG_CONFIG = (NFNL_SUBSYS_QUEUE << 8) | 2;
const CFG = { cmd: 1, params: 2, maxlen: 3 } as const;
const CMD_BIND = 1;
const COPY_PACKET = 2;
const A = { hdr: 1, mark: 3, payload: 10 } as const;
export const NF_DROP = 0;
export const NF_ACCEPT = 1;
/** A queued packet's verdict header (NFQA_VERDICT_HDR) and mark (NFQA_MARK). */
const V = { hdr: 2, mark: 3 } as const;

const be32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
};

function message(type: number, seq: number, queue: number, attrs: Buffer[], ack: boolean): Buffer {
  const body = Buffer.concat(attrs);
  const h = Buffer.alloc(20);
  h.writeUInt32LE(20 + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(NLM_F_REQUEST | (ack ? NLM_F_ACK : 0), 6);
  h.writeUInt32LE(seq >>> 0, 8);
  h.writeUInt8(0, 16); // AF_UNSPEC
  h.writeUInt8(0, 17); // NFNETLINK_V0
  h.writeUInt16BE(queue, 18); // res_id: the queue number
  return Buffer.concat([h, body]);
}

export interface QueueConfig {
  /** Bytes of each packet copied to us (from the IP header). */
  readonly copyRange: number;
  /** Packets the kernel holds for us at most; beyond, it drops (no fail-open). */
  readonly maxLen: number;
}

/** Bind the queue, copy packets (headers), bound its length; each with an ack. */
export function configRequests(queue: number, firstSeq: number, c: QueueConfig): Buffer[] {
  const cmd = Buffer.alloc(4);
  cmd.writeUInt8(CMD_BIND, 0);
  const params = Buffer.alloc(5);
  params.writeUInt32BE(c.copyRange, 0);
  params.writeUInt8(COPY_PACKET, 4);
  return [
    message(NFQNL_MSG_CONFIG, firstSeq, queue, [attr(CFG.cmd, cmd)], true),
    message(NFQNL_MSG_CONFIG, firstSeq + 1, queue, [attr(CFG.params, params)], true),
    message(NFQNL_MSG_CONFIG, firstSeq + 2, queue, [attr(CFG.maxlen, be32(c.maxLen))], true),
  ];
}

/** The verdict on packet `id`; with `mark`, the packet's mark is set to it. */
export function verdictMessage(
  queue: number,
  seq: number,
  id: number,
  verdict: number,
  mark?: number,
): Buffer {
  const hdr = Buffer.alloc(8);
  hdr.writeUInt32BE(verdict >>> 0, 0);
  hdr.writeUInt32BE(id >>> 0, 4);
  const attrs = [attr(V.hdr, hdr), ...(mark !== undefined ? [attr(V.mark, be32(mark))] : [])];
  return message(NFQNL_MSG_VERDICT, seq, queue, attrs, false);
}

export interface QueuedPacket {
  readonly queue: number;
  readonly id: number;
  readonly mark: number;
  /** From the IP header, cut at the copy range. */
  readonly payload: Buffer;
}

export interface ParsedQueue {
  readonly packets: QueuedPacket[];
  readonly acks: { seq: number; errno: number }[];
  invalid: number;
}

/** Parses every message of a datagram from the kernel; malformed parts are counted, never thrown. */
export function parseQueue(b: Buffer): ParsedQueue {
  const out: ParsedQueue = { packets: [], acks: [], invalid: 0 };
  let o = 0;
  while (o + 16 <= b.length) {
    const len = b.readUInt32LE(o);
    if (len < 16 || o + len > b.length) {
      out.invalid++;
      break;
    }
    const type = b.readUInt16LE(o + 4);
    if (type === NLMSG_ERROR && len >= 20) {
      out.acks.push({ seq: len >= 28 ? b.readUInt32LE(o + 24) : 0, errno: -b.readInt32LE(o + 16) });
    } else if (type === NFQNL_MSG_PACKET && len >= 20) {
      const p = parsePacket(b, o + 20, o + len, b.readUInt16BE(o + 18));
      if (p) out.packets.push(p);
      else out.invalid++;
    }
    o += (len + 3) & ~3;
  }
  return out;
}

function parsePacket(b: Buffer, start: number, end: number, queue: number): QueuedPacket | undefined {
  let id: number | undefined;
  let mark = 0;
  let payload: Buffer | undefined;
  let o = start;
  while (o + 4 <= end) {
    const len = b.readUInt16LE(o);
    const type = b.readUInt16LE(o + 2) & 0x3fff;
    if (len < 4 || o + len > end) return undefined;
    const v = o + 4;
    if (type === A.hdr && len - 4 >= 7) id = b.readUInt32BE(v);
    else if (type === A.mark && len - 4 >= 4) mark = b.readUInt32BE(v);
    else if (type === A.payload) payload = b.subarray(v, o + len);
    o += (len + 3) & ~3;
  }
  return id === undefined || payload === undefined ? undefined : { queue, id, mark, payload };
}
