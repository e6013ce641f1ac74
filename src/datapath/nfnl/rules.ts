/**
 * An endpoint chain's rule text -> nf_tables expressions (abi/nft-object-wire.ts),
 * for exactly the statements compile-endpoint.ts writes, laid out as nft 1.0.6
 * lays them out:
 *
 *   ip saddr != A / ip6 saddr != A     meta nfproto == 2|10, payload saddr, cmp !=
 *   meta nfproto ipv4|ipv6             meta nfproto, cmp ==
 *   ct state established,related|invalid   ct state, bitwise &, cmp != 0
 *   meta l4proto != N                  meta l4proto, cmp !=
 *   [meta mark & M .] meta l4proto . th dport|@th,0,8 vmap @S
 *                                      concatenation in registers 1, 9, 10 (nft's byte-order
 *                                      conversions for interval maps included), lookup with a verdict
 *   log group G prefix "P"   accept | drop | jump C | goto C   ct mark set ct mark or X
 *   comment "..."                      (last) the rule's userdata
 *
 * Anything else is refused (RuleShapeError): the caller lets nft write that
 * change. Names are checked against what compile emits, lengths are bounded.
 */
import { VERDICT } from "../../abi/nft-setelem-wire.js";
import type { Expr, WireRule } from "../../abi/nft-object-wire.js";
import { parseAddr } from "../../labels/cidr.js";

/**
 * Chains the endpoint compiler names: an endpoint's own (e<id>_<dir>), a policy group's
 * (g<n>_<dir>) and its verdict chains (g<n>_<dir>_<a|r|p|u><rule>[d]); policy-groups.ts.
 */
export const ENDPOINT_CHAIN = /^(e\d{1,10}_(in|out)|g\d{1,10}_(in|out)(_[arpu]\d{1,10}d?)?)$/;
/** A policy group's verdict maps. */
export const ENDPOINT_MAP = /^g\d{1,10}_(in|out)_(id|idr|idi|any|anyr|anyi)$/;
/** What those chains' rules and maps may jump or go to (and the shared chain egress jumps to). */
const JUMP_TARGET = /^(mark_dst|g\d{1,10}_(in|out)(_[arpu]\d{1,10}d?)?)$/;

/** A statement rules.ts does not know: not an error, the caller lets nft write the change. */
export class RuleShapeError extends Error {}

const le32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
};

function addrBytes(text: string, family: 4 | 6): Buffer {
  const a = parseAddr(text);
  if (!a || a.family !== family) throw new Error(`"${text.slice(0, 60)}" is not an IPv${family} address`);
  const n = family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  let v = a.value;
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

const nfproto = (family: 4 | 6): Expr[] => [
  { op: "meta", key: "nfproto", dreg: 1 },
  { op: "cmp", sreg: 1, eq: true, data: Buffer.from([family === 4 ? 2 : 10]) },
];

/** The endpoint maps that are hashes (segments.ts: single ports); the others are interval maps. */
const HASH_MAP = /_(id|any)$/;

function lookup(mask: string | undefined, l4: "port" | "byte", set: string): Expr[] {
  if (!ENDPOINT_MAP.test(set)) throw new Error(`map @${set} is not an endpoint map`);
  // nft converts the host-order fields (mark, protocol) to network order only for an
  // interval map's key (pipapo compares bytes); a hash map's key keeps them as loaded.
  const hton = !HASH_MAP.test(set);
  const out: Expr[] = [];
  // The first field goes to register 1 (16 bytes), the next ones to the 4-byte registers 9, 10.
  let next = 1;
  if (mask !== undefined) {
    out.push(
      { op: "meta", key: "mark", dreg: 1 },
      { op: "bitwise", reg: 1, mask: le32(parseInt(mask, 16)), xor: le32(0), withOp: true },
      ...(hton ? [{ op: "hton", reg: 1, len: 4, size: 4 } as const] : []),
    );
    next = 9;
  }
  // nft 1.0.6 converts the protocol byte with size 2, length 1: a no-op kept for identical bytes.
  out.push({ op: "meta", key: "l4proto", dreg: next });
  if (hton) out.push({ op: "hton", reg: next, len: 1, size: 2 });
  next = next === 1 ? 9 : next + 1;
  out.push(
    l4 === "port"
      ? { op: "payload", base: "transport", offset: 2, len: 2, dreg: next }
      : { op: "payload", base: "transport", offset: 0, len: 1, dreg: next },
    { op: "lookup", sreg: 1, set, verdictMap: true },
  );
  return out;
}

type Stmt = readonly [RegExp, (m: RegExpExecArray) => Expr[]];

const STATEMENTS: readonly Stmt[] = [
  [
    /^ip saddr != (\S+)/,
    (m) => [
      ...nfproto(4),
      { op: "payload", base: "network", offset: 12, len: 4, dreg: 1 },
      { op: "cmp", sreg: 1, eq: false, data: addrBytes(m[1] as string, 4) },
    ],
  ],
  [
    /^ip6 saddr != (\S+)/,
    (m) => [
      ...nfproto(6),
      { op: "payload", base: "network", offset: 8, len: 16, dreg: 1 },
      { op: "cmp", sreg: 1, eq: false, data: addrBytes(m[1] as string, 6) },
    ],
  ],
  [/^meta nfproto (ipv4|ipv6)/, (m) => nfproto(m[1] === "ipv4" ? 4 : 6)],
  [
    /^ct state (established,related|invalid)/,
    (m) => [
      { op: "ct", key: "state", dreg: 1 },
      // NF_CT_STATE_INVALID_BIT 1, ESTABLISHED 2, RELATED 4.
      { op: "bitwise", reg: 1, mask: le32(m[1] === "invalid" ? 1 : 6), xor: le32(0), withOp: false },
      { op: "cmp", sreg: 1, eq: false, data: le32(0) },
    ],
  ],
  [
    /^meta l4proto != (\d{1,3})/,
    (m) => {
      const p = Number(m[1]);
      if (p > 255) throw new Error(`protocol ${p} is not in 0..255`);
      return [
        { op: "meta", key: "l4proto", dreg: 1 },
        { op: "cmp", sreg: 1, eq: false, data: Buffer.from([p]) },
      ];
    },
  ],
  [
    /^(?:meta mark & 0x([0-9a-f]{8}) \. )?meta l4proto \. (th dport|@th,0,8) vmap @(\w{1,64})/,
    (m) => lookup(m[1], m[2] === "th dport" ? "port" : "byte", m[3] as string),
  ],
  [
    /^log group (\d{1,5}) prefix "([\x20-\x21\x23-\x7e]{0,127})"/,
    (m) => {
      const group = Number(m[1]);
      if (group > 0xffff) throw new Error(`log group ${group} is not in 0..65535`);
      return [{ op: "log", group, prefix: m[2] as string }];
    },
  ],
  [
    /^ct mark set ct mark or 0x([0-9a-f]{8})/,
    (m) => {
      const bit = parseInt(m[1] as string, 16);
      return [
        { op: "ct", key: "mark", dreg: 1 },
        { op: "bitwise", reg: 1, mask: le32(~bit), xor: le32(bit), withOp: true },
        { op: "ctSetMark", sreg: 1 },
      ];
    },
  ],
  [/^(accept|drop)(?= |$)/, (m) => [{ op: "verdict", code: VERDICT[m[1] as "accept" | "drop"] }]],
  [
    /^(jump|goto) (\w{1,64})/,
    (m) => {
      const chain = m[2] as string;
      if (!JUMP_TARGET.test(chain)) throw new Error(`${m[1]} target ${chain} is not an endpoint chain`);
      return [{ op: "verdict", code: VERDICT[m[1] as "jump" | "goto"], chain }];
    },
  ],
];

/** Upper bound on a rule's text: compile's longest rule is ~200 characters. */
const MAX_RULE = 512;

/**
 * One rule of `chain`. Throws RuleShapeError for a statement compile-endpoint.ts
 * does not write, and Error for a known statement with a bad value or name.
 */
export function ruleOf(chain: string, text: string): WireRule {
  if (!ENDPOINT_CHAIN.test(chain)) throw new Error(`chain "${chain.slice(0, 80)}" is not an endpoint chain`);
  if (text.length > MAX_RULE)
    throw new Error(`a rule of ${text.length} characters is longer than ${MAX_RULE}`);
  let rest = text;
  let comment: string | undefined;
  const c = / comment "([\x20-\x21\x23-\x7e]{0,128})"$/.exec(rest);
  if (c) {
    comment = c[1] as string;
    rest = rest.slice(0, c.index);
  }
  const exprs: Expr[] = [];
  while (rest.length > 0) {
    const hit = STATEMENTS.map(([re, f]) => [re.exec(rest), f] as const).find(([m]) => m !== null);
    if (!hit || !hit[0]) throw new RuleShapeError(`unknown statement at "${rest.slice(0, 60)}"`);
    exprs.push(...hit[1](hit[0]));
    rest = rest.slice(hit[0][0].length);
    if (rest.length > 0 && !rest.startsWith(" "))
      throw new RuleShapeError(`unknown statement at "${rest.slice(0, 60)}"`);
    rest = rest.slice(1);
  }
  if (exprs.length === 0) throw new RuleShapeError("an empty rule");
  return { chain, exprs, ...(comment !== undefined ? { comment } : {}) };
}
