/**
 * nf_tables objects as netlink bytes: chains, maps (sets), rules and their
 * expressions, for exactly the shapes the endpoint compiler emits, and the
 * batch that carries them (with set elements, abi/nft-setelem-wire.ts).
 *
 *   BATCH_BEGIN(res_id = NFNL_SUBSYS_NFTABLES)
 *     NEWCHAIN {TABLE, NAME}                                     (NLM_F_CREATE)
 *     NEWSET   {TABLE, NAME, FLAGS, KEY_TYPE, KEY_LEN, DATA_TYPE, DATA_LEN, ID, DESC, USERDATA}
 *     NEWSETELEM / DELSETELEM                                    (nft-setelem-wire.ts)
 *     NEWRULE  {TABLE, CHAIN, EXPRESSIONS: [{NAME, DATA}...], USERDATA: comment}
 *                                                                (NLM_F_CREATE|NLM_F_APPEND)
 *     DELRULE  {TABLE, CHAIN}  (flush chain)   DELSET {TABLE, NAME}   DELCHAIN {TABLE, NAME}
 *   BATCH_END                   every message NLM_F_ACK: one NLMSG_ERROR each, any error aborts all
 *
 * Attribute order, values and padding are nft 1.0.6's (read with strace and
 * `nft --debug=netlink,mnl` for every shape, test/abi/nft-object-wire.test.ts
 * keeps a few of them): `nft list table` of what we write is the text of what
 * nft writes. Register numbers: 1 is the 16-byte NFT_REG_1, 9.. are 4-byte
 * registers (NFT_REG32_01..), as nft allocates them in concatenations. Byte
 * orders: verdict codes, payload offsets and every u32 attribute big-endian;
 * register data (cmp, bitwise) as the kernel holds it (host order for meta/ct
 * values, network order for packet bytes). Constants from
 * include/uapi/linux/netfilter/nf_tables.h and libnftnl's udata.h.
 */
import { attr, NLM_F_ACK, NLM_F_REQUEST, NLMSG_HDRLEN, nest } from "./ctnetlink-wire.js";
import type { WireElement } from "./nft-setelem-wire.js";

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const MSG = {
  newChain: 3,
  delChain: 5,
  newRule: 6,
  delRule: 8,
  newSet: 9,
  delSet: 11,
  newSetElem: 12,
  delSetElem: 14,
} as const;
const NFPROTO_INET = 1;
const NLM_F_CREATE = 0x400;
const NLM_F_APPEND = 0x800;

const CHAIN = { table: 1, name: 3 } as const;
const RULE = { table: 1, chain: 2, expressions: 4, userdata: 7 } as const;
const SET = {
  table: 1,
  name: 2,
  flags: 3,
  keyType: 4,
  keyLen: 5,
  dataType: 6,
  dataLen: 7,
  desc: 9,
  id: 10,
  userdata: 13,
} as const;
const LIST_ELEM = 1;
const EXPR = { name: 1, data: 2 } as const;

/** Names of tables, chains and sets: what compile emits, bounded by NFT_NAME_MAXLEN (256 with NUL). */
const NAME = /^[A-Za-z0-9_]{1,255}$/;
/** NF_LOG_PREFIXLEN is 128 with its NUL. */
const MAX_PREFIX = 127;
/** nft refuses comments longer than 128 characters ("comment too long"); we write no longer ones. */
const MAX_COMMENT = 128;

/** One netlink message of a batch, without its header (sequence numbers are the sender's). */
export interface NfMsg {
  readonly type: number;
  readonly flags: number;
  /** The nfgenmsg and the attributes. */
  readonly body: Buffer;
}

/** One expression of a rule, as nft 1.0.6 lays out the endpoint shapes. */
export type Expr =
  | { readonly op: "meta"; readonly key: "mark" | "nfproto" | "l4proto"; readonly dreg: number }
  | { readonly op: "cmp"; readonly sreg: number; readonly eq: boolean; readonly data: Uint8Array }
  | {
      readonly op: "payload";
      readonly base: "network" | "transport";
      readonly offset: number;
      readonly len: number;
      readonly dreg: number;
    }
  | {
      readonly op: "bitwise";
      readonly reg: number;
      readonly mask: Uint8Array;
      readonly xor: Uint8Array;
      /** nft writes NFTA_BITWISE_OP (boolean) for `&` in expressions and `or` in ct mark set, not for ct state. */
      readonly withOp: boolean;
    }
  | { readonly op: "hton"; readonly reg: number; readonly len: number; readonly size: number }
  | { readonly op: "ct"; readonly key: "state" | "mark"; readonly dreg: number }
  | { readonly op: "ctSetMark"; readonly sreg: number }
  | { readonly op: "lookup"; readonly sreg: number; readonly set: string; readonly verdictMap: boolean }
  | { readonly op: "verdict"; readonly code: number; readonly chain?: string }
  | { readonly op: "log"; readonly group: number; readonly prefix: string };

export interface WireRule {
  readonly chain: string;
  readonly exprs: readonly Expr[];
  /** Printable ASCII; written as nft does (userdata TLV NFTNL_UDATA_RULE_COMMENT). */
  readonly comment?: string;
}

/** A named map as NEWSET takes it. */
export interface WireSet {
  readonly name: string;
  /** NFT_SET_* flags (e.g. INTERVAL|MAP|CONCAT = 0x8c). */
  readonly flags: number;
  readonly keyType: number;
  readonly keyLen: number;
  /** NFT_DATA_VERDICT = 0xffffff00, or a datatype id. */
  readonly dataType: number;
  readonly dataLen: number;
  /** Concatenated keys: the length of each field (NFTA_SET_DESC_CONCAT). */
  readonly fieldLens: readonly number[];
  /** nft's set userdata (byte orders, typeof expressions): what `nft list` prints from. */
  readonly userdata: Uint8Array;
}

const cstr = (s: string): Buffer => Buffer.from(s + "\0", "utf8");
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
};
const u16 = (v: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v, 0);
  return b;
};

function name(what: string, s: string): string {
  if (!NAME.test(s)) throw new Error(`bad ${what} name ${JSON.stringify(s.slice(0, 80))}`);
  return s;
}

function reg(r: number): Buffer {
  // NFT_REG_VERDICT 0, NFT_REG_1..4 (16 bytes), NFT_REG32_00..15 = 8..23.
  if (!Number.isInteger(r) || r < 0 || r > 23) throw new Error(`bad register ${r}`);
  return u32(r);
}

function body(table: string, attrs: Buffer[]): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(NFPROTO_INET, 0); // nfgenmsg: family, version 0, res_id 0
  return Buffer.concat([h, attr(1, cstr(name("table", table))), ...attrs]);
}

const msg = (type: number, flags: number, b: Buffer): NfMsg => ({
  type: (NFNL_SUBSYS_NFTABLES << 8) | type,
  flags,
  body: b,
});

export function newChain(table: string, chain: string): NfMsg {
  const b = body(table, []);
  return msg(MSG.newChain, NLM_F_CREATE, Buffer.concat([b, attr(CHAIN.name, cstr(name("chain", chain)))]));
}

export function delChain(table: string, chain: string): NfMsg {
  const b = body(table, []);
  return msg(MSG.delChain, 0, Buffer.concat([b, attr(CHAIN.name, cstr(name("chain", chain)))]));
}

/** Deletes every rule of a chain (`flush chain`). */
export function flushChain(table: string, chain: string): NfMsg {
  return msg(MSG.delRule, 0, body(table, [attr(RULE.chain, cstr(name("chain", chain)))]));
}

export function delSet(table: string, set: string): NfMsg {
  return msg(MSG.delSet, 0, body(table, [attr(SET.name, cstr(name("set", set)))]));
}

/** `id`: the set's number in this batch (nft numbers them from 1; rules find sets by name). */
export function newSet(table: string, s: WireSet, id: number): NfMsg {
  if (s.userdata.length > 255) throw new Error(`set ${s.name}: userdata too long`);
  if (s.fieldLens.some((n) => !Number.isInteger(n) || n < 1 || n > 16) || s.fieldLens.length > 16)
    throw new Error(`set ${s.name}: bad field lengths`);
  return msg(
    MSG.newSet,
    NLM_F_CREATE,
    body(table, [
      attr(SET.name, cstr(name("set", s.name))),
      attr(SET.flags, u32(s.flags)),
      attr(SET.keyType, u32(s.keyType)),
      attr(SET.keyLen, u32(s.keyLen)),
      attr(SET.dataType, u32(s.dataType)),
      attr(SET.dataLen, u32(s.dataLen)),
      attr(SET.id, u32(id)),
      ...(s.fieldLens.length > 0
        ? [
            nest(SET.desc, [
              nest(
                2, // NFTA_SET_DESC_CONCAT
                s.fieldLens.map((n) => nest(LIST_ELEM, [attr(1 /* NFTA_SET_FIELD_LEN */, u32(n))])),
              ),
            ]),
          ]
        : []),
      attr(SET.userdata, s.userdata),
    ]),
  );
}

const META_KEY = { mark: 3, nfproto: 15, l4proto: 16 } as const;
const CT_KEY = { state: 0, mark: 3 } as const;

function expr(e: Expr): Buffer {
  const named = (n: string, data: Buffer[]): Buffer =>
    nest(LIST_ELEM, [attr(EXPR.name, cstr(n)), nest(EXPR.data, data)]);
  switch (e.op) {
    case "meta":
      return named("meta", [attr(2, u32(META_KEY[e.key])), attr(1, reg(e.dreg))]);
    case "cmp":
      if (e.data.length < 1 || e.data.length > 16) throw new Error("bad cmp data");
      return named("cmp", [
        attr(1, reg(e.sreg)),
        attr(2, u32(e.eq ? 0 : 1)), // NFT_CMP_EQ 0, NFT_CMP_NEQ 1
        nest(3, [attr(1, e.data)]),
      ]);
    case "payload":
      if (!(e.offset >= 0 && e.offset < 256 && e.len >= 1 && e.len <= 16)) throw new Error("bad payload");
      return named("payload", [
        attr(1, reg(e.dreg)),
        attr(2, u32(e.base === "network" ? 1 : 2)), // NFT_PAYLOAD_NETWORK_HEADER 1, _TRANSPORT_HEADER 2
        attr(3, u32(e.offset)),
        attr(4, u32(e.len)),
      ]);
    case "bitwise":
      if (e.mask.length !== e.xor.length || e.mask.length < 1 || e.mask.length > 16)
        throw new Error("bad bitwise");
      return named("bitwise", [
        attr(1, reg(e.reg)),
        attr(2, reg(e.reg)),
        ...(e.withOp ? [attr(6, u32(0))] : []), // NFT_BITWISE_BOOL
        attr(3, u32(e.mask.length)),
        nest(4, [attr(1, e.mask)]),
        nest(5, [attr(1, e.xor)]),
      ]);
    case "hton":
      return named("byteorder", [
        attr(1, reg(e.reg)),
        attr(2, reg(e.reg)),
        attr(3, u32(1)), // NFT_BYTEORDER_HTON
        attr(4, u32(e.len)),
        attr(5, u32(e.size)),
      ]);
    case "ct":
      return named("ct", [attr(2, u32(CT_KEY[e.key])), attr(1, reg(e.dreg))]);
    case "ctSetMark":
      return named("ct", [attr(2, u32(CT_KEY.mark)), attr(4, reg(e.sreg))]);
    case "lookup":
      return named("lookup", [
        attr(2, reg(e.sreg)),
        ...(e.verdictMap ? [attr(3, reg(0))] : []),
        attr(1, cstr(name("set", e.set))),
      ]);
    case "verdict": {
      const code = Buffer.alloc(4);
      code.writeInt32BE(e.code, 0);
      const v = [attr(1, code), ...(e.chain !== undefined ? [attr(2, cstr(name("chain", e.chain)))] : [])];
      return named("immediate", [attr(1, reg(0)), nest(2, [nest(2, v)])]);
    }
    case "log":
      if (e.prefix.length > MAX_PREFIX || !/^[\x20-\x7e]*$/.test(e.prefix) || e.prefix.includes('"'))
        throw new Error("bad log prefix");
      if (!Number.isInteger(e.group) || e.group < 0 || e.group > 0xffff) throw new Error("bad log group");
      return named("log", [attr(2, cstr(e.prefix)), attr(1, u16(e.group))]);
  }
}

/** A rule appended to its chain. */
export function newRule(table: string, r: WireRule): NfMsg {
  if (r.exprs.length === 0 || r.exprs.length > 32) throw new Error("a rule needs 1..32 expressions");
  const attrs = [attr(RULE.chain, cstr(name("chain", r.chain))), nest(RULE.expressions, r.exprs.map(expr))];
  if (r.comment !== undefined) {
    const c = Buffer.from(r.comment + "\0", "latin1");
    if (r.comment.length > MAX_COMMENT || !/^[\x20-\x7e]*$/.test(r.comment))
      throw new Error("bad rule comment");
    attrs.push(
      attr(RULE.userdata, Buffer.concat([Buffer.from([0 /* NFTNL_UDATA_RULE_COMMENT */, c.length]), c])),
    );
  }
  return msg(MSG.newRule, NLM_F_CREATE | NLM_F_APPEND, body(table, attrs));
}

/** Elements per message, at most, and bytes of one ELEMENTS attribute (its length is 16 bits). */
const ELEMENTS_PER_MESSAGE = 500;
const MAX_ELEMENTS_BYTES = 0xffff - 4;

function element(e: WireElement, withData: boolean): Buffer {
  const key = (type: number, k: Uint8Array): Buffer => nest(type, [attr(1 /* NFTA_DATA_VALUE */, k)]);
  const parts = [
    key(1 /* NFTA_SET_ELEM_KEY */, e.key),
    ...(e.keyEnd ? [key(10 /* _KEY_END */, e.keyEnd)] : []),
  ];
  if (e.timeoutMs !== undefined) {
    // NFTA_SET_ELEM_TIMEOUT: milliseconds, u64 big-endian (the kernel rounds to jiffies).
    if (!Number.isSafeInteger(e.timeoutMs) || e.timeoutMs <= 0) throw new Error("bad element timeout");
    const t = Buffer.alloc(8);
    t.writeBigUInt64BE(BigInt(e.timeoutMs), 0);
    parts.push(attr(4 /* NFTA_SET_ELEM_TIMEOUT */, t));
  }
  if (withData && !(e.set && e.verdict === undefined && e.value === undefined)) {
    if (e.verdict) {
      const code = Buffer.alloc(4);
      code.writeInt32BE(e.verdict.code, 0);
      const v = [
        attr(1, code),
        ...(e.verdict.chain !== undefined ? [attr(2, cstr(name("chain", e.verdict.chain)))] : []),
      ];
      parts.push(nest(2 /* NFTA_SET_ELEM_DATA */, [nest(2 /* NFTA_DATA_VERDICT */, v)]));
    } else if (e.value !== undefined) {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(e.value >>> 0, 0); // host byte order (little-endian everywhere we run)
      parts.push(nest(2, [attr(1, b)]));
    } else throw new Error("an element to add has neither a value nor a verdict");
  }
  return nest(LIST_ELEM, parts);
}

/**
 * NEWSETELEM (`add`) or DELSETELEM (`del`) messages for `elems` of `set`: as many as
 * it takes for every ELEMENTS attribute to fit its 16-bit length (long verdict chain
 * names make elements ~130 bytes, so a count alone would not bound it).
 */
export function elementMessages(
  table: string,
  set: string,
  kind: "add" | "del",
  elems: readonly WireElement[],
): NfMsg[] {
  const encoded = elems.map((e) => element(e, kind === "add"));
  const out: NfMsg[] = [];
  let i = 0;
  while (i < encoded.length) {
    let bytes = 0;
    let j = i;
    while (j < encoded.length && j - i < ELEMENTS_PER_MESSAGE) {
      const n = (encoded[j] as Buffer).length;
      if (j > i && bytes + n > MAX_ELEMENTS_BYTES) break;
      bytes += n;
      j++;
    }
    out.push(
      msg(
        kind === "add" ? MSG.newSetElem : MSG.delSetElem,
        kind === "add" ? NLM_F_CREATE : 0,
        body(table, [
          attr(2 /* NFTA_SET_ELEM_LIST_SET */, cstr(name("set", set))),
          nest(3, encoded.slice(i, j)),
        ]),
      ),
    );
    i = j;
  }
  return out;
}

/**
 * The batch: BEGIN, every message with NLM_F_ACK and its own sequence number, END.
 * Returns the bytes and the sequence numbers whose acknowledgements to await.
 */
export function frameBatch(msgs: readonly NfMsg[], firstSeq: number): { bytes: Buffer; seqs: number[] } {
  let seq = firstSeq;
  const header = (type: number, flags: number, s: number, len: number): Buffer => {
    const h = Buffer.alloc(NLMSG_HDRLEN);
    h.writeUInt32LE(NLMSG_HDRLEN + len, 0);
    h.writeUInt16LE(type, 4);
    h.writeUInt16LE(flags, 6);
    h.writeUInt32LE(s, 8);
    return h;
  };
  const edge = (type: number, s: number): Buffer => {
    const g = Buffer.alloc(4);
    g.writeUInt16BE(NFNL_SUBSYS_NFTABLES, 2);
    return Buffer.concat([header(type, NLM_F_REQUEST, s, 4), g]);
  };
  const parts: Buffer[] = [edge(NFNL_MSG_BATCH_BEGIN, seq++)];
  const seqs: number[] = [];
  for (const m of msgs) {
    const pad = Buffer.alloc(((m.body.length + 3) & ~3) - m.body.length);
    seqs.push(seq);
    parts.push(header(m.type, m.flags | NLM_F_REQUEST | NLM_F_ACK, seq++, m.body.length), m.body, pad);
  }
  parts.push(edge(NFNL_MSG_BATCH_END, seq));
  return { bytes: Buffer.concat(parts), seqs };
}
