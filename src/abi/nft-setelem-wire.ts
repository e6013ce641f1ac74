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
import { NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, NLMSG_HDRLEN } from "./ctnetlink-wire.js";

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG_NEWSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | 12;
const NFT_MSG_DELSETELEM = (NFNL_SUBSYS_NFTABLES << 8) | 14;
/**
 * What a writer batch may hold (renumberBatch): chains, rules, sets and their
 * elements, created or deleted (nfnl/objects.ts, and element deltas); never a
 * table, a flowtable or a stateful object.
 */
const WRITABLE: ReadonlySet<number> = new Set(
  [3, 5, 6, 8, 9, 11, 12, 14].map((m) => (NFNL_SUBSYS_NFTABLES << 8) | m), // NEW/DEL CHAIN, RULE, SET, SETELEM
);
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
  /** a verdict (verdict maps): NF_DROP 0, NF_ACCEPT 1, NFT_RETURN -5, NFT_GOTO -4, NFT_JUMP -3, or */
  readonly verdict?: { readonly code: number; readonly chain?: string };
  /** data bytes as the map stores them (e.g. a concatenation `ipv4_addr . inet_service`), or */
  readonly data?: Uint8Array;
  /** none: an element of a set (no value). */
  readonly set?: true;
  /**
   * The element's timeout in milliseconds (sets with `flags timeout`): NFTA_SET_ELEM_TIMEOUT.
   * Written by nft-object-wire.ts elementMessages only (setElemBatch refuses it).
   */
  readonly timeoutMs?: number;
}

export interface SetElemOps {
  readonly set: string;
  readonly add: readonly WireElement[];
  /** Key (and key end) only. */
  readonly del: readonly WireElement[];
}

export const VERDICT = { drop: 0, accept: 1, jump: -3, goto: -4, return: -5 } as const;

const NAME = /^[A-Za-z0-9_]{1,255}$/;
const pad4 = (n: number): number => (n + 3) & ~3;
/** Bytes of a C string attribute's payload (ASCII names only: checked by NAME). */
const cstrLen = (s: string): number => s.length + 1;

/** Size of one element's LIST_ELEM attribute (padded), without writing it. */
function elementSize(e: WireElement, withData: boolean): number {
  if (e.timeoutMs !== undefined) throw new Error("setElemBatch writes no element timeouts");
  let n = 4 + 8 + pad4(e.key.length); // LIST_ELEM { KEY { VALUE k } }
  if (e.keyEnd) n += 8 + pad4(e.keyEnd.length);
  if (!withData) return n;
  if (e.verdict) {
    n += 4 + 4 + 8; // DATA { VERDICT { CODE } }
    if (e.verdict.chain !== undefined) n += 4 + pad4(cstrLen(e.verdict.chain));
  } else if (e.value !== undefined)
    n += 4 + 8; // DATA { VALUE u32 }
  else if (e.data !== undefined)
    n += 4 + 4 + pad4(e.data.length); // DATA { VALUE bytes }
  else if (!e.set) throw new Error("an element to add has neither a value nor a verdict");
  return n;
}

/**
 * Writes netlink messages and attributes into one buffer sized in advance
 * (no intermediate buffer per attribute: a batch of thousands of elements is
 * one allocation).
 */
class Writer {
  readonly b: Buffer;
  o = 0;
  constructor(size: number) {
    this.b = Buffer.alloc(size);
  }
  /** Starts an attribute; returns its offset for end(). */
  start(type: number): number {
    const at = this.o;
    this.b.writeUInt16LE(type, at + 2);
    this.o += 4;
    return at;
  }
  end(at: number): void {
    this.b.writeUInt16LE(this.o - at, at);
    this.o = pad4(this.o);
  }
  bytes(type: number, v: Uint8Array): void {
    const at = this.start(type);
    this.b.set(v, this.o);
    this.o += v.length;
    this.end(at);
  }
  cstr(type: number, s: string): void {
    const at = this.start(type);
    this.o += this.b.write(s, this.o, "latin1") + 1; // the buffer is zeroed: the NUL is there
    this.end(at);
  }
  u32(type: number, v: number, be: boolean): void {
    const at = this.start(type);
    if (be) this.b.writeInt32BE(v | 0, this.o);
    else this.b.writeUInt32LE(v >>> 0, this.o); // host byte order: every platform we run on is little-endian
    this.o += 4;
    this.end(at);
  }
  message(type: number, flags: number, seq: number, family: number, resId: number): number {
    const at = this.o;
    this.b.writeUInt16LE(type, at + 4);
    this.b.writeUInt16LE(flags, at + 6);
    this.b.writeUInt32LE(seq, at + 8);
    this.b.writeUInt8(family, at + 16);
    this.b.writeUInt16BE(resId, at + 18);
    this.o += NLMSG_HDRLEN + 4;
    return at;
  }
  endMessage(at: number): void {
    this.b.writeUInt32LE(this.o - at, at);
  }
}

function writeElement(w: Writer, e: WireElement, withData: boolean): void {
  const el = w.start(NFTA_LIST_ELEM | NLA_F_NESTED);
  const key = w.start(NFTA_SET_ELEM.key | NLA_F_NESTED);
  w.bytes(NFTA_DATA.value, e.key);
  w.end(key);
  if (e.keyEnd) {
    const ke = w.start(NFTA_SET_ELEM.keyEnd | NLA_F_NESTED);
    w.bytes(NFTA_DATA.value, e.keyEnd);
    w.end(ke);
  }
  if (withData && !(e.set && e.verdict === undefined && e.value === undefined && e.data === undefined)) {
    const data = w.start(NFTA_SET_ELEM.data | NLA_F_NESTED);
    if (e.verdict) {
      const v = w.start(NFTA_DATA.verdict | NLA_F_NESTED);
      w.u32(NFTA_VERDICT.code, e.verdict.code, true);
      if (e.verdict.chain !== undefined) w.cstr(NFTA_VERDICT.chain, e.verdict.chain);
      w.end(v);
    } else if (e.data !== undefined) w.bytes(NFTA_DATA.value, e.data);
    else w.u32(NFTA_DATA.value, e.value ?? 0, false);
    w.end(data);
  }
  w.end(el);
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
  // Plan the messages: one per run of elements whose ELEMENTS attribute fits its 16-bit
  // length (and at most ELEMENTS_PER_MESSAGE): verdict elements with long chain names are
  // ~130 bytes, so a count alone would not bound it.
  const runs: { type: number; set: string; els: readonly WireElement[]; from: number; to: number }[] = [];
  let total = 2 * (NLMSG_HDRLEN + 4);
  const head = (set: string): number =>
    NLMSG_HDRLEN + 4 + 4 + pad4(cstrLen(table)) + 4 + pad4(cstrLen(set)) + 4;
  const plan = (type: number, set: string, els: readonly WireElement[], withData: boolean): void => {
    let i = 0;
    while (i < els.length) {
      let bytes = 0;
      let j = i;
      while (j < els.length && j - i < ELEMENTS_PER_MESSAGE) {
        const n = elementSize(els[j] as WireElement, withData);
        if (j > i && bytes + n > MAX_ATTR_BYTES) break;
        bytes += n;
        j++;
      }
      runs.push({ type, set, els, from: i, to: j });
      total += head(set) + bytes;
      i = j;
    }
  };
  for (const o of ops) {
    if (!/^[A-Za-z0-9_]{1,64}$/.test(o.set)) throw new Error(`bad set name "${o.set}"`);
    plan(NFT_MSG_DELSETELEM, o.set, o.del, false);
  }
  for (const o of ops) {
    for (const e of o.add) {
      const chain = e.verdict?.chain;
      if (chain !== undefined && !NAME.test(chain)) throw new Error(`bad chain name "${chain}"`);
    }
    plan(NFT_MSG_NEWSETELEM, o.set, o.add, true);
  }
  const w = new Writer(total);
  let seq = firstSeq;
  w.endMessage(w.message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, seq++, 0, NFNL_SUBSYS_NFTABLES));
  const seqs: number[] = [];
  for (const r of runs) {
    const add = r.type === NFT_MSG_NEWSETELEM;
    seqs.push(seq);
    const m = w.message(r.type, NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE : 0), seq++, NFPROTO_INET, 0);
    w.cstr(NFTA_SET_ELEM_LIST.table, table);
    w.cstr(NFTA_SET_ELEM_LIST.set, r.set);
    const list = w.start(NFTA_SET_ELEM_LIST.elements | NLA_F_NESTED);
    for (let i = r.from; i < r.to; i++) writeElement(w, r.els[i] as WireElement, add);
    w.end(list);
    w.endMessage(m);
  }
  w.endMessage(w.message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, seq, 0, NFNL_SUBSYS_NFTABLES));
  if (w.o !== total) throw new Error(`setElemBatch: wrote ${w.o} bytes of ${total}`);
  return { bytes: w.b, seqs };
}

/**
 * The messages of a batch setElemBatch made, renumbered from `firstSeq` (in
 * place): the sequence numbers whose acknowledgements to await (every message
 * but the batch's begin and end). Throws when the bytes are not such a batch.
 */
export function renumberBatch(bytes: Buffer, firstSeq: number): number[] {
  const seqs: number[] = [];
  let o = 0;
  let seq = firstSeq;
  let n = 0;
  while (o < bytes.length) {
    if (bytes.length - o < NLMSG_HDRLEN) throw new Error("a batch ends inside a message header");
    const len = bytes.readUInt32LE(o);
    if (len < NLMSG_HDRLEN || len > bytes.length - o || len % 4 !== 0)
      throw new Error(`a batch message has a bad length ${len}`);
    const type = bytes.readUInt16LE(o + 4);
    const edge = type === NFNL_MSG_BATCH_BEGIN || type === NFNL_MSG_BATCH_END;
    if (!edge && !WRITABLE.has(type))
      throw new Error(`a batch holds a message of type ${type}, not a chain, rule, set or element change`);
    if ((n === 0) !== (type === NFNL_MSG_BATCH_BEGIN)) throw new Error("a batch must begin with BATCH_BEGIN");
    bytes.writeUInt32LE(seq, o + 8);
    if (!edge) seqs.push(seq);
    seq++;
    o += len;
    n++;
    if (type === NFNL_MSG_BATCH_END && o !== bytes.length) throw new Error("a batch goes on after BATCH_END");
    if (o === bytes.length && type !== NFNL_MSG_BATCH_END) throw new Error("a batch must end with BATCH_END");
  }
  if (n === 0) throw new Error("an empty batch");
  return seqs;
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
