/**
 * NftMap elements -> the bytes the kernel stores (abi/nft-setelem-wire.ts),
 * as nft itself encodes them (checked by strace against nft 1.0.6 and by the
 * tests, which read what we wrote back with nft):
 *
 *   field     one-field key          field of a concatenation (each padded to 4 bytes)
 *   ipv4/6    4/16 bytes, network    same
 *   mark      4 bytes, host order    4 bytes, network order (nft byte-swaps concatenated marks)
 *   proto     -                      1 byte + 3 zero
 *   port      -                      2 bytes network order + 2 zero
 *   byte      -                      1 byte + 3 zero
 *   interval maps get a key end (the range's last values) even for a single value
 *
 * Anything else (interface names, intervals in a one-field map) is not
 * encoded: undefined, and the caller lets nft do that change.
 */
import type { WireElement } from "../../abi/nft-setelem-wire.js";
import { VERDICT } from "../../abi/nft-setelem-wire.js";
import type { FieldKind, KeyPart, NftElement, NftMap } from "../model.js";

/** The JSON form the writer process takes (hex bytes). */
export interface ElementJson {
  k: string;
  e?: string;
  v?: number;
  vc?: number;
  ch?: string;
}

function field(kind: FieldKind, v: bigint, concat: boolean): Buffer | undefined {
  const n = (bytes: number, le: boolean): Buffer => {
    const b = Buffer.alloc(bytes);
    let x = v;
    for (let i = 0; i < bytes; i++) {
      b[le ? i : bytes - 1 - i] = Number(x & 0xffn);
      x >>= 8n;
    }
    return b;
  };
  switch (kind) {
    case "ipv4":
      return n(4, false);
    case "ipv6":
      return n(16, false);
    case "mark":
      return n(4, !concat);
    case "proto":
    case "byte":
      return concat ? Buffer.concat([n(1, false), Buffer.alloc(3)]) : undefined;
    case "port":
      return concat ? Buffer.concat([n(2, false), Buffer.alloc(2)]) : undefined;
    default:
      return undefined;
  }
}

function keyBytes(m: NftMap, key: readonly KeyPart[], end: boolean): Buffer | undefined {
  const concat = m.fields.length > 1;
  const parts: Buffer[] = [];
  for (let i = 0; i < m.fields.length; i++) {
    const p = key[i];
    const kind = m.fields[i];
    if (p === undefined || kind === undefined || typeof p === "string") return undefined;
    if (!m.interval && p.lo !== p.hi) return undefined;
    const b = field(kind, end ? p.hi : p.lo, concat);
    if (!b) return undefined;
    parts.push(b);
  }
  return Buffer.concat(parts);
}

function verdictOf(value: string): { vc: number; ch?: string } | undefined {
  const [verb, chain] = value.split(" ");
  if (verb === "goto" || verb === "jump") return chain ? { vc: VERDICT[verb], ch: chain } : undefined;
  if (verb === "accept" || verb === "drop" || verb === "return") return { vc: VERDICT[verb] };
  return undefined;
}

/** One element (with its value unless `keyOnly`), or undefined when nfnl/ cannot write it. */
export function encodeElement(m: NftMap, e: NftElement, keyOnly: boolean): ElementJson | undefined {
  if (m.interval && m.fields.length < 2) return undefined; // rbtree intervals: left to nft
  const k = keyBytes(m, e.key, false);
  if (!k) return undefined;
  const out: ElementJson = { k: k.toString("hex") };
  if (m.interval) {
    const end = keyBytes(m, e.key, true);
    if (!end) return undefined;
    out.e = end.toString("hex");
  }
  if (keyOnly) return out;
  if (m.valueType === "mark") {
    if (!/^\d+$/.test(e.value)) return undefined;
    out.v = Number(e.value);
    return out;
  }
  const v = verdictOf(e.value);
  if (!v) return undefined;
  out.vc = v.vc;
  if (v.ch !== undefined) out.ch = v.ch;
  return out;
}

/** ElementJson -> WireElement (in the writer process). */
export function wireElement(j: ElementJson): WireElement {
  return {
    key: Buffer.from(j.k, "hex"),
    ...(j.e !== undefined ? { keyEnd: Buffer.from(j.e, "hex") } : {}),
    ...(j.v !== undefined ? { value: j.v } : {}),
    ...(j.vc !== undefined
      ? { verdict: { code: j.vc, ...(j.ch !== undefined ? { chain: j.ch } : {}) } }
      : {}),
  };
}
