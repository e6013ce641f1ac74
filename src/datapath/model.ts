/**
 * The compiled form of a table: maps with typed elements and chains with rule
 * text. compile() produces it from a DatapathState; readback.ts produces the
 * same shape from `nft -j list table`; the Reconciler diffs the two.
 *
 * Element keys are kept canonical (every field a numeric [lo, hi] interval,
 * or a string for interface names) so that "10.0.0.0/8" written by us and
 * `{"prefix": {"addr": "10.0.0.0", "len": 8}}` read back compare equal.
 */
import { createHash } from "node:crypto";
import ipaddr from "ipaddr.js";

/** What one field of a map key holds. */
export type FieldKind = "ipv4" | "ipv6" | "mark" | "proto" | "port" | "byte" | "ifname";

export interface Interval {
  lo: bigint;
  hi: bigint;
}
export type KeyPart = Interval | string;

export interface NftElement {
  key: KeyPart[];
  /** Mark value in decimal, or a verdict: accept, drop, return, "jump C", "goto C". */
  value: string;
}

export interface NftMap {
  name: string;
  fields: FieldKind[];
  valueType: "mark" | "verdict";
  interval: boolean;
  elements: NftElement[];
}

export interface NftChain {
  name: string;
  /** Base chain declaration, e.g. "type filter hook forward priority filter; policy accept;". */
  base?: string;
  rules: string[];
}

export interface CompiledTable {
  family: "inet";
  name: string;
  maps: NftMap[];
  chains: NftChain[];
}

const BITS: Record<Exclude<FieldKind, "ifname">, number> = {
  ipv4: 32,
  ipv6: 128,
  mark: 32,
  proto: 8,
  port: 16,
  byte: 8,
};
const TYPE: Record<FieldKind, string> = {
  ipv4: "ipv4_addr",
  ipv6: "ipv6_addr",
  mark: "mark",
  proto: "inet_proto",
  port: "inet_service",
  byte: "integer",
  ifname: "ifname",
};
const TYPEOF: Record<FieldKind, string> = {
  ipv4: "ip saddr",
  ipv6: "ip6 saddr",
  mark: "meta mark",
  proto: "meta l4proto",
  port: "th dport",
  byte: "@th,0,8",
  ifname: "meta iifname",
};

export function fieldBits(kind: Exclude<FieldKind, "ifname">): number {
  return BITS[kind];
}

/** The declaration body of a map (without elements). Raw payload fields need `typeof`. */
export function mapDecl(m: NftMap): string {
  const useTypeof = m.fields.includes("byte");
  const key = useTypeof
    ? "typeof " + m.fields.map((f) => TYPEOF[f]).join(" . ")
    : "type " + m.fields.map((f) => TYPE[f]).join(" . ");
  const value = useTypeof ? (m.valueType === "mark" ? "meta mark" : "verdict") : m.valueType;
  return `${key} : ${value};${m.interval ? " flags interval;" : ""}`;
}

/** What `nft -j` reports for a map's type, value type and flags, to detect a changed declaration. */
export function mapSignature(m: NftMap): string {
  return `${m.fields.map((f) => TYPE[f]).join(",")}:${m.valueType}:${m.interval ? "interval" : ""}`;
}

function addrText(kind: "ipv4" | "ipv6", v: bigint): string {
  const n = kind === "ipv4" ? 4 : 16;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(8 * i)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

function partText(kind: FieldKind, p: KeyPart): string {
  if (typeof p === "string") return JSON.stringify(p);
  const one = (v: bigint): string => (kind === "ipv4" || kind === "ipv6" ? addrText(kind, v) : v.toString());
  return p.lo === p.hi ? one(p.lo) : `${one(p.lo)}-${one(p.hi)}`;
}

/** nft text of an element key, e.g. `5 . 6 . 1000-2000`. */
export function keyText(m: NftMap, key: readonly KeyPart[]): string {
  return key.map((p, i) => partText(m.fields[i] ?? "mark", p)).join(" . ");
}

/**
 * nft text of a key for `delete element`. nft 1.0.6 cannot delete an element of a
 * concatenated interval map whose fields are all single values (`5 . 6 . 80`
 * gives ENOENT) but finds it when the last field is written as a range (`80-80`).
 */
export function deleteKeyText(m: NftMap, key: readonly KeyPart[]): string {
  const text = keyText(m, key);
  const last = key[key.length - 1];
  if (!m.interval || key.length < 2 || last === undefined || typeof last === "string" || last.lo !== last.hi)
    return text;
  const parts = key.map((p, i) => partText(m.fields[i] ?? "mark", p));
  const lastText = parts.pop() ?? "";
  return [...parts, `${lastText}-${lastText}`].join(" . ");
}

/** Canonical key (for diffing): numeric intervals, independent of prefix/range spelling. */
export function keyCanon(key: readonly KeyPart[]): string {
  return key.map((p) => (typeof p === "string" ? JSON.stringify(p) : `${p.lo}-${p.hi}`)).join(".");
}

/**
 * Per-element values computed once in an element's life (its canonical key for
 * diffs and the stamp, its key bytes for nfnl/), kept only for frozen elements
 * (frozenElement: the element, its key array and its intervals), whose content
 * cannot change under the cache. The element a change deletes is the one an
 * earlier change added: its canonical key and bytes are already there.
 */
interface ElementMemo {
  canon?: string;
  /**
   * nfnl/encode.ts: the element as the kernel takes it (abi/nft-setelem-wire.ts WireElement),
   * for maps of this shape (fields and interval flag); `data` once its value was encoded too.
   */
  wire?: {
    shape: string;
    data: boolean;
    el: {
      key: Uint8Array;
      keyEnd?: Uint8Array;
      value?: number;
      verdict?: { code: number; chain?: string };
    };
  };
}
/**
 * The memo lives on the element itself (a property neither enumerated nor copied
 * by a spread), attached when it is frozen: a field load, where a WeakMap of tens
 * of thousands of entries costs a hash lookup and weighs on every GC.
 */
const MEMO = Symbol("memo");

/** An element whose content can no longer change (its key's intervals frozen too). */
export function frozenElement(e: NftElement): NftElement {
  if (Object.isFrozen(e)) return e;
  for (const p of e.key) if (typeof p !== "string") Object.freeze(p);
  Object.freeze(e.key);
  Object.defineProperty(e, MEMO, { value: {}, enumerable: false });
  return Object.freeze(e);
}

/** The memo of an element made by frozenElement, or undefined (nothing is kept for others). */
export function elementMemo(e: NftElement): ElementMemo | undefined {
  return (e as { [MEMO]?: ElementMemo })[MEMO];
}

/** keyCanon of an element's key, computed once for a frozen element. */
export function elementCanon(e: NftElement): string {
  const memo = elementMemo(e);
  if (!memo) return keyCanon(e.key);
  return (memo.canon ??= keyCanon(e.key));
}

export function elementText(m: NftMap, e: NftElement): string {
  return `${keyText(m, e.key)} : ${e.value}`;
}

/**
 * Hashes (and rules with the hash) of frozen chains, computed once: compile()
 * freezes the chains it makes (frozenChain), so their content cannot change
 * under the cache; a chain that is not frozen is hashed every time.
 */
const CHAIN_MEMO = Symbol("chain memo");
type ChainMemo = { hash?: string; withHash?: string[] };

/** A chain whose content can no longer change (so that its hash is computed once). */
export function frozenChain(c: NftChain): NftChain {
  if (Object.isFrozen(c)) return c;
  Object.freeze(c.rules);
  Object.defineProperty(c, CHAIN_MEMO, { value: {}, enumerable: false });
  return Object.freeze(c);
}

function cacheOf(c: NftChain): { hash: string; withHash?: string[] } {
  const memo = (c as { [CHAIN_MEMO]?: ChainMemo })[CHAIN_MEMO] ?? {};
  memo.hash ??= createHash("sha256")
    .update((c.base ?? "") + "\n" + c.rules.join("\n"))
    .digest("hex")
    .slice(0, 12);
  return memo as { hash: string; withHash?: string[] };
}

/** Short content hash of a chain, stored in its first rule's comment to detect changed chains. */
export function chainHash(c: NftChain): string {
  return cacheOf(c).hash;
}

export const HASH_COMMENT_PREFIX = "mbr:h=";

/**
 * The chain's rules as written to the kernel: the first one carries the content
 * hash in its comment (`mbr:h=<12 hex>`, followed by the rule's own comment if any).
 */
export function chainRulesWithHash(c: NftChain): string[] {
  const entry = cacheOf(c);
  if (entry.withHash) return [...entry.withHash];
  const tag = HASH_COMMENT_PREFIX + entry.hash;
  const out = c.rules.map((r, i) => {
    if (i !== 0) return r;
    const m = / comment "([^"]*)"$/.exec(r);
    return m ? `${r.slice(0, m.index)} comment "${tag} ${m[1]}"` : `${r} comment "${tag}"`;
  });
  entry.withHash = out; // kept only when the entry is the chain's memo (frozen chains)
  return [...out];
}

/** The hash from a first rule's comment, or undefined. */
export function hashFromComment(comment: string): string | undefined {
  return comment.startsWith(HASH_COMMENT_PREFIX)
    ? comment.slice(HASH_COMMENT_PREFIX.length).split(" ")[0]
    : undefined;
}

/** Whole-table text, for display and snapshots (the Reconciler writes commands, not this). */
export function renderTable(t: CompiledTable): string {
  const out = [`table ${t.family} ${t.name} {`];
  for (const m of t.maps) {
    out.push(`\tmap ${m.name} {`, `\t\t${mapDecl(m)}`);
    if (m.elements.length > 0) {
      out.push(`\t\telements = { ${m.elements.map((e) => elementText(m, e)).join(",\n\t\t\t     ")} }`);
    }
    out.push("\t}");
  }
  for (const c of t.chains) {
    out.push(`\tchain ${c.name} {`);
    if (c.base) out.push(`\t\t${c.base}`);
    for (const r of c.rules) out.push(`\t\t${r}`);
    out.push("\t}");
  }
  out.push("}");
  return out.join("\n") + "\n";
}
