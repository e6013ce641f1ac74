/**
 * NftMap elements -> the bytes the kernel stores (abi/nft-setelem-wire.ts),
 * as nft itself encodes them (checked by strace against nft 1.0.6 and by the
 * tests, which read what we wrote back with nft):
 *
 *   field     one-field key          field of a concatenation (each padded to 4 bytes)
 *   ipv4/6    4/16 bytes, network    same
 *   mark      4 bytes, host order    interval maps: 4 bytes, network order (nft byte-swaps them);
 *                                    hash maps: 4 bytes, host order
 *   proto     -                      1 byte + 3 zero
 *   port      -                      2 bytes network order + 2 zero
 *   byte      -                      1 byte + 3 zero
 *   ifname    16 bytes, NUL-padded   same (hash maps only)
 *   interval maps get a key end (the range's last values) even for a single value
 *
 * Anything else (intervals in a one-field map) is not
 * encoded: undefined, and the caller lets nft do that change. Elements go to
 * the writer process as the batch's bytes (abi/nft-setelem-wire.ts), not as
 * text: no string per element on either side.
 */
import { isIfname } from "../../abi/ifname.js";
import type { WireElement } from "../../abi/nft-setelem-wire.js";
import { VERDICT } from "../../abi/nft-setelem-wire.js";
import { elementMemo, type FieldKind, type KeyPart, type NftElement, type NftMap } from "../model.js";

/** Bytes of one field in a key; 0 when nfnl/ does not encode that field kind there. */
function fieldSize(kind: FieldKind, concat: boolean): number {
  switch (kind) {
    case "ipv4":
    case "mark":
      return 4;
    case "ipv6":
    case "ifname":
      return 16;
    case "proto":
    case "byte":
    case "port":
      return concat ? 4 : 0;
    default:
      return 0;
  }
}

/** Key bytes (written into one buffer, no intermediate ones), or undefined when not encodable. */
function keyBytes(m: NftMap, key: readonly KeyPart[], end: boolean): Buffer | undefined {
  const concat = m.fields.length > 1;
  let size = 0;
  for (const kind of m.fields) {
    const n = fieldSize(kind, concat);
    if (n === 0) return undefined;
    size += n;
  }
  // Every byte is written below (padding included): no zero-fill needed.
  const b = Buffer.allocUnsafe(size);
  let o = 0;
  for (let i = 0; i < m.fields.length; i++) {
    const p = key[i];
    const kind = m.fields[i] as FieldKind;
    if (kind === "ifname" && typeof p === "string") {
      // IFNAMSIZ bytes, NUL-padded, as nft writes an `iifname` key (15 characters at most).
      if (!isIfname(p) || m.interval) return undefined;
      b.fill(0, o, o + 16);
      b.write(p, o, "latin1");
      o += 16;
      continue;
    }
    if (p === undefined || typeof p === "string") return undefined;
    if (!m.interval && p.lo !== p.hi) return undefined;
    const v = end ? p.hi : p.lo;
    if (v < 0n) return undefined;
    switch (kind) {
      case "ipv6":
        if (v >> 128n !== 0n) return undefined;
        b.writeBigUInt64BE(v >> 64n, o);
        b.writeBigUInt64BE(v & 0xffffffffffffffffn, o + 8);
        o += 16;
        continue;
      case "ipv4":
      case "mark": {
        if (v > 0xffffffffn) return undefined;
        const x = Number(v);
        // nft byte-swaps a mark only in an interval map's concatenation (pipapo compares bytes).
        if (kind === "mark" && !(concat && m.interval)) b.writeUInt32LE(x, o);
        else b.writeUInt32BE(x, o);
        break;
      }
      case "proto":
      case "byte":
        if (v > 0xffn) return undefined;
        b.writeUInt32BE(Number(v) * 0x1000000, o); // 1 byte + 3 zero
        break;
      case "port":
        if (v > 0xffffn) return undefined;
        b.writeUInt32BE(Number(v) * 0x10000, o); // 2 bytes network order + 2 zero
        break;
      default:
        return undefined;
    }
    o += 4;
  }
  return b;
}

function verdictOf(value: string): { code: number; chain?: string } | undefined {
  const sp = value.indexOf(" ");
  const verb = sp < 0 ? value : value.slice(0, sp);
  if (verb === "goto" || verb === "jump") {
    const chain = value.slice(sp + 1);
    return sp > 0 && chain !== "" && !chain.includes(" ") ? { code: VERDICT[verb], chain } : undefined;
  }
  if (sp < 0 && (verb === "accept" || verb === "drop" || verb === "return")) return { code: VERDICT[verb] };
  return undefined;
}

/**
 * One element as the kernel takes it (with its value unless `keyOnly`), or
 * undefined when nfnl/ cannot write it.
 */
export function encodeElement(m: NftMap, e: NftElement, keyOnly: boolean): WireElement | undefined {
  if (m.interval && m.fields.length < 2) return undefined; // rbtree intervals: left to nft
  // Encoded once per frozen element (model.ts): a deletion reuses what its addition encoded
  // (a deletion writes the key only: the value of a shared WireElement is not sent).
  const memo = elementMemo(e);
  const shape = m.interval
    ? `${m.fields.join(".")}/i/${m.valueType}`
    : `${m.fields.join(".")}/${m.valueType}`;
  const hit = memo?.wire?.shape === shape ? memo.wire : undefined;
  if (hit && (keyOnly || hit.data)) return hit.el;
  let el: WireElement;
  if (hit) el = hit.el;
  else {
    const key = keyBytes(m, e.key, false);
    if (!key) return undefined;
    if (m.interval) {
      const keyEnd = keyBytes(m, e.key, true);
      if (!keyEnd) return undefined;
      el = { key, keyEnd };
    } else el = { key };
  }
  if (!keyOnly) {
    if (m.valueType === "mark") {
      if (!/^\d+$/.test(e.value)) return undefined;
      const value = Number(e.value);
      if (value > 0xffffffff) return undefined;
      el = el.keyEnd ? { key: el.key, keyEnd: el.keyEnd, value } : { key: el.key, value };
    } else {
      const verdict = verdictOf(e.value);
      if (!verdict) return undefined;
      el = el.keyEnd ? { key: el.key, keyEnd: el.keyEnd, verdict } : { key: el.key, verdict };
    }
  }
  if (memo) memo.wire = { shape, data: !keyOnly, el };
  return el;
}
