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
  CTA,
  ctnetlinkFrames,
  NFGEN_HDRLEN,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_REQUEST,
  NLMSG_HDRLEN,
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
  const { buf, frames } = ctnetlinkFrames(datagram);
  return frames.map((f): DumpReply => {
    if (f.kind !== "entry") return f;
    const e = parseEntryBody(buf, f.body, f.end);
    return typeof e === "string"
      ? { kind: "invalid", seq: f.seq, reason: e }
      : { kind: "entry", seq: f.seq, original: e.original, mark: e.mark ?? 0 };
  });
}
