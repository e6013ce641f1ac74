/**
 * `nft -j -n list table` output -> what the kernel holds, in the terms of model.ts.
 *
 *   {"map": {name, type, map, flags, elem: [[key, value], ...]}}  -> ActualMap (raw elements)
 *   {"chain": {name}}, {"rule": {chain, comment}}                  -> ActualChain (content hash)
 *
 * Elements are decoded only against a desired map's field kinds (decodeElements),
 * because the same JSON value means different things in different fields.
 */
import { MembraneError } from "../errors.js";
import { parseAddr } from "../labels/cidr.js";
import { fieldBits, hashFromComment, type FieldKind, type KeyPart, type NftMap } from "./model.js";

export interface ActualMap {
  name: string;
  signature: string;
  rawElements: unknown[];
  /** Elements already decoded (when the table is what we applied last, not read back). */
  decoded?: readonly { key: KeyPart[]; value: string }[];
}
export interface ActualChain {
  name: string;
  /** Content hash from the first rule's comment; undefined when missing (not written by us). */
  hash: string | undefined;
  rules: number;
}
export interface ActualTable {
  maps: Map<string, ActualMap>;
  chains: Map<string, ActualChain>;
}

type Json = unknown;
const isObj = (v: Json): v is Record<string, Json> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function bad(what: string, v: Json): MembraneError {
  return new MembraneError(
    "NFT_APPLY_FAILED",
    `Cannot read the nftables table back: unexpected ${what} ${JSON.stringify(v)}`,
    {
      hint: "The table may have been changed by hand; delete it and let the reconciler recreate it.",
    },
  );
}

/** Parses the top-level `nft -j list table` document. */
export function parseTable(doc: Json): ActualTable {
  const out: ActualTable = { maps: new Map(), chains: new Map() };
  if (!isObj(doc) || !Array.isArray(doc.nftables)) throw bad("document", doc);
  for (const item of doc.nftables) {
    if (!isObj(item)) continue;
    const m = item.map ?? item.set;
    if (isObj(m) && typeof m.name === "string") {
      const types = Array.isArray(m.type) ? m.type.map(String) : [String(m.type)];
      const flags = Array.isArray(m.flags) ? m.flags.map(String) : [];
      const value = typeof m.map === "string" ? m.map : "";
      out.maps.set(m.name, {
        name: m.name,
        signature: `${types.join(",")}:${value}:${flags.includes("interval") ? "interval" : ""}`,
        rawElements: Array.isArray(m.elem) ? m.elem : [],
      });
    }
    const c = item.chain;
    if (isObj(c) && typeof c.name === "string")
      out.chains.set(c.name, { name: c.name, hash: undefined, rules: 0 });
    const r = item.rule;
    if (isObj(r) && typeof r.chain === "string") {
      const ch = out.chains.get(r.chain);
      if (!ch) continue;
      if (ch.rules === 0 && typeof r.comment === "string") ch.hash = hashFromComment(r.comment);
      ch.rules++;
    }
  }
  return out;
}

function toBig(v: Json): bigint {
  if (typeof v === "number") return BigInt(v);
  if (typeof v === "string" && /^(0x[0-9a-f]+|\d+)$/i.test(v)) return BigInt(v);
  throw bad("number", v);
}

function decodePart(kind: FieldKind, v: Json): KeyPart {
  if (kind === "ifname") {
    if (typeof v !== "string") throw bad("interface name", v);
    return v;
  }
  const scalar = (x: Json): bigint => {
    if ((kind === "ipv4" || kind === "ipv6") && typeof x === "string") {
      const a = parseAddr(x);
      if (!a) throw bad("address", x);
      return a.value;
    }
    return toBig(x);
  };
  if (isObj(v) && Array.isArray(v.range) && v.range.length === 2)
    return { lo: scalar(v.range[0]), hi: scalar(v.range[1]) };
  if (isObj(v) && isObj(v.prefix)) {
    const width = fieldBits(kind);
    const len = Number(v.prefix.len);
    const lo = scalar(v.prefix.addr);
    return { lo, hi: lo + (1n << BigInt(width - len)) - 1n };
  }
  const x = scalar(v);
  return { lo: x, hi: x };
}

function decodeValue(v: Json): string {
  if (typeof v === "number" || typeof v === "string") return toBig(v).toString();
  if (isObj(v)) {
    for (const verdict of ["accept", "drop", "return", "continue"]) if (verdict in v) return verdict;
    for (const verdict of ["jump", "goto"]) {
      const t = v[verdict];
      if (isObj(t) && typeof t.target === "string") return `${verdict} ${t.target}`;
    }
  }
  throw bad("map value", v);
}

/** Decodes a map's raw JSON elements with the field kinds of the desired map of the same name. */
export function decodeElements(desired: NftMap, raw: readonly Json[]): { key: KeyPart[]; value: string }[] {
  return raw.map((e) => {
    if (!Array.isArray(e) || e.length !== 2) throw bad("element", e);
    let k: Json = e[0];
    if (isObj(k) && isObj(k.elem)) k = k.elem.val;
    const parts = isObj(k) && Array.isArray(k.concat) ? k.concat : [k];
    if (parts.length !== desired.fields.length) throw bad(`key for map ${desired.name}`, k);
    return { key: parts.map((p, i) => decodePart(desired.fields[i] ?? "mark", p)), value: decodeValue(e[1]) };
  });
}
