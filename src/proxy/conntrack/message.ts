/**
 * ctnetlink as bytes: the IPCTNL_MSG_CT_GET request that looks a conntrack
 * entry up by its REPLY tuple, and a strict parser of what the kernel sends
 * back. Pure; no sockets here (client.ts owns the socket).
 *
 *   buildGetRequest(seq, replyTuple) --> {ok, message} | {ok: false, reason}
 *   datagram --parseReplies--> [{kind: "entry", seq, original, mark?, id?} | {kind: "error", seq, errno}
 *                               | {kind: "invalid", seq?, reason}]
 *
 * For a DNATed connection the reply tuple is (proxy's local addr:port -> client
 * addr:port); the entry's ORIGINAL tuple then carries the destination the client
 * asked for. The encoding and the entry parser are shared with the datapath's
 * conntrack dump (abi/ctnetlink-wire.ts); parseReplies never throws.
 */
import {
  CT_GET,
  CTA,
  ctnetlinkFrames,
  NLM_F_REQUEST,
  parseEntryBody,
  tupleRequest,
  type RequestResult,
  type Tuple,
  type TupleQuery,
} from "../../abi/ctnetlink-wire.js";

export {
  CT_GET,
  CT_NEW,
  IPPROTO_TCP,
  IPPROTO_UDP,
  NETLINK_NETFILTER,
  NLMSG_ERROR,
  NLMSG_NOOP,
  type RequestResult,
  type Tuple,
  type TupleQuery,
} from "../../abi/ctnetlink-wire.js";

export type Reply =
  /** IPCTNL_MSG_CT_NEW: the entry, its original tuple, and its mark and id when the kernel sent them. */
  | {
      readonly kind: "entry";
      readonly seq: number;
      readonly original: Tuple;
      readonly mark?: number;
      readonly id?: number;
    }
  /** NLMSG_ERROR: errno as a positive number (2 ENOENT: no such entry); 0 is a plain ACK. */
  | { readonly kind: "error"; readonly seq: number; readonly errno: number }
  /** Malformed or unexpected; `seq` when the netlink header itself was readable. */
  | { readonly kind: "invalid"; readonly seq?: number; readonly reason: string };

/**
 * IPCTNL_MSG_CT_GET for the entry whose REPLY tuple is `reply`, with sequence
 * number `seq`. No NLM_F_ACK: the kernel answers with the entry or an error.
 */
export function buildGetRequest(seq: number, reply: TupleQuery): RequestResult {
  return tupleRequest(CT_GET, NLM_F_REQUEST, seq, CTA.tupleReply, reply);
}

function parseEntry(b: Buffer, start: number, end: number, seq: number): Reply {
  const e = parseEntryBody(b, start, end);
  if (typeof e === "string") return { kind: "invalid", seq, reason: e };
  return { kind: "entry", seq, ...e };
}

/** Every netlink message in one datagram, in order. Stops at the first broken netlink header. */
export function parseReplies(datagram: Uint8Array): Reply[] {
  const { buf, frames } = ctnetlinkFrames(datagram);
  return frames.map((f): Reply => {
    if (f.kind === "entry") return parseEntry(buf, f.body, f.end, f.seq);
    // A lookup is never answered with a dump's end: NLMSG_DONE is unexpected here.
    if (f.kind === "done")
      return { kind: "invalid", seq: f.seq, reason: "unexpected netlink message type 0x3" };
    return f;
  });
}
