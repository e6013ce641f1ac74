/**
 * nf_tables set elements as netlink bytes: one batch that adds and deletes
 * elements of maps with a fixed-size key and a 32-bit value (the ipcache's
 * host maps), and the reading of the kernel's acknowledgements.
 *
 *   BATCH_BEGIN(res_id = NFNL_SUBSYS_NFTABLES)
 *     DELSETELEM {TABLE, SET, ELEMENTS: [{KEY: {VALUE: k}, KEY_END?: {VALUE: k}}...]}      (NLM_F_ACK)
 *     NEWSETELEM {TABLE, SET, ELEMENTS: [{KEY, KEY_END?, DATA: {VALUE: v} | {VERDICT: {CODE, CHAIN?}}}...]}
 *                                                                                (NLM_F_CREATE|NLM_F_ACK)
 *   BATCH_END
 *   -> one NLMSG_ERROR per message (error 0 = done); any error aborts the whole batch
 *
 * Why by hand: `nft` reads the declarations of every chain and set of the
 * table before it runs any command (measured: 1.7 MB of netlink dumps and
 * 0.4-0.7 s on a loaded 2-core machine for one element, in a table of 1,000
 * endpoints), so one remote address would cost what the node holds. No npm
 * package speaks nf_tables; libnftnl has no Node binding. Key bytes are made
 * by datapath/nfnl/encode.ts (checked against what nft itself sends); the
 * verdict code is big-endian, a data value host-endian. Constants from
 * include/uapi/linux/netfilter/nf_tables.h and nfnetlink.h.
 */
import { attr, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN, nest } from "./ctnetlink-wire.js";

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | 12;
const NFT_MSG_DELSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | 14;
const NFPROTO_INET = 1;
const NLM_F_CREATE = 0x400;
const NFTA_SET_ELEM_LIST = { table: 1, set: 2, elements: 3 } as const;
const NFTA_LIST_ELEM = 1;
const NFTA_SET_ELEM = { key: 1, data: 2, keyEnd: 10 } as const;
const NFTA_DATA = { value: 1, verdict: 2 } as const;
const NFTA_VERDICT = { code: 1, chain: 2 } as const;

/** Elements per message, at most. */
export const ELEMENTS_PER_MESSAGE = 500;
/** Bytes of elements in one ELEMENTS attribute: its length field is 16 bits (with its 4-byte header). */
const MAX_ATTR_BYTES = 0xffff - 4;

/** One element as the kernel takes it: key (and key end for interval maps), and its value. */
export interface WireElement {
  readonly key: Uint8Array;
  /** Interval (pipapo) maps: the last key of the range (equal to `key` for one value). */
  readonly keyEnd?: Uint8Array;
  /** A 32-bit data value (mark maps, host byte order), or */
  readonly value?: number;
  /** a verdict (verdict maps): NF_DROP 0, NF_ACCEPT 1, NFT_RETURN -5, NFT_GOTO -4, NFT_JUMP -3. */
  readonly verdict?: { readonly code: number; readonly chain?: string };
}

export interface SetElemOps {
  readonly set: string;
  readonly add: readonly WireElement[];
  /** Key (and key end) only. */
  readonly del: readonly WireElement[];
}

export const VERDICT = { drop: 0, accept: 1, jump: -3, goto: -4, return: -5 } as const;

const cstr = (s: string): Buffer => Buffer.from(s + "\0", "utf8");

function message(
  type: number,
  flags: number,
  seq: number,
  family: number,
  resId: number,
  body: Buffer,
): Buffer {
  const h = Buffer.alloc(NLMSG_HDRLEN + 4);
  h.writeUInt32LE(h.length + body.length, 0);
  h.writeUInt16LE(type, 4);
  h.writeUInt16LE(flags, 6);
  h.writeUInt32LE(seq, 8);
  h.writeUInt32LE(0, 12);
  h.writeUInt8(family, 16);
  h.writeUInt8(0, 17);
  h.writeUInt16BE(resId, 18);
  return Buffer.concat([h, body]);
}

function u32host(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0); // host byte order: every platform we run on is little-endian
  return b;
}

/**
 * One atomic batch for `table` (family inet): every deletion, then every
 * addition (a changed value is a deletion and an addition of its key).
 * Returns the bytes and the sequence numbers whose acknowledgements to await.
 */
export function setElemBatch(
  table: string,
  ops: readonly SetElemOps[],
  firstSeq: number,
): { bytes: Buffer; seqs: number[] } {
  if (!/^[A-Za-z0-9_]{1,64}$/.test(table)) throw new Error(`bad table name "${table}"`);
  let seq = firstSeq;
  const parts: Buffer[] = [
    message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)),
  ];
  const seqs: number[] = [];
  const emit = (type: number, flags: number, set: string, elems: Buffer[]): void => {
    // One message per run of elements whose ELEMENTS attribute fits its 16-bit length
    // (and at most ELEMENTS_PER_MESSAGE): verdict elements with long chain names are
    // ~130 bytes, so a count alone would not bound it.
    let i = 0;
    while (i < elems.length) {
      let bytes = 0;
      let j = i;
      while (j < elems.length && j - i < ELEMENTS_PER_MESSAGE) {
        const n = (elems[j] as Buffer).length;
        if (j > i && bytes + n > MAX_ATTR_BYTES) break;
        bytes += n;
        j++;
      }
      const body = Buffer.concat([
        attr(NFTA_SET_ELEM_LIST.table, cstr(table)),
        attr(NFTA_SET_ELEM_LIST.set, cstr(set)),
        nest(NFTA_SET_ELEM_LIST.elements, elems.slice(i, j)),
      ]);
      seqs.push(seq);
      parts.push(message(type, NLM_F_REQUEST | NLM_F_ACK | flags, seq++, NFPROTO_INET, 0, body));
      i = j;
    }
  };

  const keys = (e: WireElement): Buffer[] => [
    nest(NFTA_SET_ELEM.key, [attr(NFTA_DATA.value, e.key)]),
    ...(e.keyEnd ? [nest(NFTA_SET_ELEM.keyEnd, [attr(NFTA_DATA.value, e.keyEnd)])] : []),
  ];
  const data = (e: WireElement): Buffer[] => {
    if (e.verdict) {
      const code = Buffer.alloc(4);
      code.writeInt32BE(e.verdict.code, 0);
      const v = [attr(NFTA_VERDICT.code, code)];
      if (e.verdict.chain !== undefined) {
        if (!/^[A-Za-z0-9_]{1,255}$/.test(e.verdict.chain))
          throw new Error(`bad chain name "${e.verdict.chain}"`);
        v.push(attr(NFTA_VERDICT.chain, cstr(e.verdict.chain)));
      }
      return [nest(NFTA_SET_ELEM.data, [nest(NFTA_DATA.verdict, v)])];
    }
    if (e.value !== undefined) return [nest(NFTA_SET_ELEM.data, [attr(NFTA_DATA.value, u32host(e.value))])];
    throw new Error("an element to add has neither a value nor a verdict");
  };
  for (const o of ops) {
    if (!/^[A-Za-z0-9_]{1,64}$/.test(o.set)) throw new Error(`bad set name "${o.set}"`);
    emit(
      NFT_MSG_DELSETELEM,
      0,
      o.set,
      o.del.map((e) => nest(NFTA_LIST_ELEM, keys(e))),
    );
  }
  for (const o of ops) {
    emit(
      NFT_MSG_NEWSETELEM,
      NLM_F_CREATE,
      o.set,
      o.add.map((e) => nest(NFTA_LIST_ELEM, [...keys(e), ...data(e)])),
    );
  }
  parts.push(message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES, Buffer.alloc(0)));
  return { bytes: Buffer.concat(parts), seqs };
}

/** The acknowledgements in one datagram: sequence number -> errno (0 = done). Never throws. */
export function parseAcks(datagram: Uint8Array): Map<number, number> {
  const b = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
  const out = new Map<number, number>();
  let o = 0;
  while (b.length - o >= NLMSG_HDRLEN) {
    const len = b.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || len > b.length - o) break;
    const type = b.readUInt16LE(o + 4);
    const seq = b.readUInt32LE(o + 8);
    if (type === NLMSG_ERROR && len >= NLMSG_HDRLEN + 4) out.set(seq, -b.readInt32LE(o + NLMSG_HDRLEN));
    o += (len + 3) & ~3;
  }
  return out;
}
