/**
 * ctnetlink dump and delete as bytes. Pure; the socket lives in child.ts.
 *
 *   buildDumpRequest(seq, {mark, mask}) --> IPCTNL_MSG_CT_GET | NLM_F_DUMP, both families,
 *                                           only entries with (ct mark & mask) == mark
 *   buildDeleteRequest(seq, originalTuple) --> IPCTNL_MSG_CT_DELETE | NLM_F_ACK
 *   datagram --parseDumpReplies--> [{kind: "entry", seq, original, mark} | {kind: "done", seq}
 *                                   | {kind: "error", seq, errno} | {kind: "invalid", seq?, reason}]
 *
 * The kernel filters a dump by mark itself (ctnetlink_alloc_filter), so only
 * candidate entries cross into user space.
 */
import {
  attr,
  be32,
  CT_DELETE,
  CT_GET,
  CT_NEW,
  CTA,
  NFGEN_HDRLEN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSG_HDRLEN,
  NLMSG_NOOP,
  parseEntryBody,
  tupleRequest,
  type RequestResult,
  type Tuple,
  type TupleQuery,
} from "../../abi/ctnetlink-wire.js";

export type DumpReply =
  | { readonly kind: "entry"; readonly seq: number; readonly original: Tuple; readonly mark: number }
  | { readonly kind: "done"; readonly seq: number }
  /** NLMSG_ERROR: errno as a positive number; 0 is an ACK. */
  | { readonly kind: "error"; readonly seq: number; readonly errno: number }
  | { readonly kind: "invalid"; readonly seq?: number; readonly reason: string };

/** A dump of every entry (IPv4 and IPv6) whose ct mark, masked with `mask`, equals `mark`. */
export function buildDumpRequest(seq: number, filter: { mark: number; mask: number }): Buffer {
  const body = Buffer.concat([attr(CTA.mark, be32(filter.mark)), attr(CTA.markMask, be32(filter.mask))]);
  const h = Buffer.alloc(NLMSG_HDRLEN + NFGEN_HDRLEN);
  h.writeUInt32LE(h.length + body.length, 0);
  h.writeUInt16LE(CT_GET, 4);
  h.writeUInt16LE(NLM_F_REQUEST | NLM_F_DUMP, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  // nfgen_family AF_UNSPEC (0): both families; version 0; res_id 0.
  return Buffer.concat([h, body]);
}

/** Deletes the entry whose ORIGINAL tuple is `original`; the kernel ACKs (errno 0) or answers ENOENT. */
export function buildDeleteRequest(seq: number, original: TupleQuery): RequestResult {
  return tupleRequest(CT_DELETE, NLM_F_REQUEST | NLM_F_ACK, seq, CTA.tupleOrig, original);
}

/** Every netlink message of one datagram of a dump or of delete ACKs. Never throws. */
export function parseDumpReplies(datagram: Uint8Array): DumpReply[] {
  const b = Buffer.isBuffer(datagram)
    ? datagram
    : Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const out: DumpReply[] = [];
  let o = 0;
  while (o < b.length) {
    if (b.length - o < NLMSG_HDRLEN) {
      out.push({ kind: "invalid", reason: `${b.length - o} trailing bytes, too short for a netlink header` });
      break;
    }
    const len = b.readUInt32LE(o);
    const type = b.readUInt16LE(o + 4);
    const seq = b.readUInt32LE(o + 8);
    if (len < NLMSG_HDRLEN || len > b.length - o) {
      out.push({
        kind: "invalid",
        seq,
        reason: `netlink message length ${len} at offset ${o} is out of bounds`,
      });
      break;
    }
    const body = o + NLMSG_HDRLEN;
    const end = o + len;
    if (type === CT_NEW) {
      const e = parseEntryBody(b, body, end);
      if (typeof e === "string") out.push({ kind: "invalid", seq, reason: e });
      else out.push({ kind: "entry", seq, original: e.original, mark: e.mark ?? 0 });
    } else if (type === NLMSG_DONE) out.push({ kind: "done", seq });
    else if (type === NLMSG_ERROR) {
      if (end - body < 4)
        out.push({ kind: "invalid", seq, reason: "NLMSG_ERROR is too short for its error code" });
      else {
        const err = b.readInt32LE(body);
        if (err > 0)
          out.push({ kind: "invalid", seq, reason: `NLMSG_ERROR carries a positive error ${err}` });
        else out.push({ kind: "error", seq, errno: err === 0 ? 0 : -err });
      }
    } else if (type !== NLMSG_NOOP) {
      out.push({ kind: "invalid", seq, reason: `unexpected netlink message type 0x${type.toString(16)}` });
    }
    o += (len + 3) & ~3;
  }
  return out;
}
