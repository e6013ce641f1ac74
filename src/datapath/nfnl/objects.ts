/**
 * Endpoint parts as nf_tables messages: what plan.ts would write with `nft`
 * for a change that touches only endpoints (their chains, maps and dispatch
 * elements), host addresses and the stamp, as one batch of netlink messages
 * for nfnl/setelem.ts (no `nft` process, whose cost grows with the table).
 *
 *   scopes [(want, had)] per endpoint, host and stamp element deltas
 *     -> per scope, plan.ts's order: new chains, new maps, element changes
 *        (interval maps: deletions first), rules of new or changed chains
 *        (flushed first), removed elements, then removed chains are flushed,
 *        removed maps deleted (their verdicts release the chains), removed
 *        chains deleted
 *     -> NfMsg[] (abi/nft-object-wire.ts), or undefined: something here cannot
 *        be written (another map shape, a rule shape rules.ts does not know,
 *        a map whose declaration changed); the caller lets nft do it
 *
 * A dispatch element leaves before its endpoint's chains go (it jumps to
 * them); a new one comes after they exist. The kernel checks both, and
 * applies the batch whole or not at all.
 */
import { isIfname } from "../../abi/ifname.js";
import { MembraneError } from "../../errors.js";
import {
  elementMessages,
  delChain,
  delSet,
  flushChain,
  newChain,
  newRule,
  newSet,
  type NfMsg,
  type WireSet,
} from "../../abi/nft-object-wire.js";
import type { WireElement } from "../../abi/nft-setelem-wire.js";
import {
  chainHash,
  chainRulesWithHash,
  keyCanon,
  mapSignature,
  type CompiledTable,
  type NftElement,
  type NftMap,
} from "../model.js";
import type { ElementDelta } from "../plan.js";
import { encodeElement } from "./encode.js";
import { ENDPOINT_CHAIN, ENDPOINT_MAP, RuleShapeError, ruleOf } from "./rules.js";

/** Bytes of one batch, at most: a bigger change goes through nft (one endpoint is ~6 KB). */
export const MAX_BATCH_BYTES = 1 << 20;

// nft 1.0.6's set userdata (libnftnl udata TLVs: key and data byte order, the typeof
// expressions of raw payload fields), copied from what it sends for these declarations.
const UD_TYPE = "000400000000010400000000030800040d0000000100060400000000";
const UD_TH_MARK =
  "000400000000010400000000035000040d0000000148000e0004090000000106000403000000010e00040900000001060004100000000226" +
  "000407000000011e000400000000010400000000020403000000030400000000040408000000040800040100000001000604" +
  "00000000";
const UD_TH =
  "000400000000010400000000034000040d0000000138000e00040900000001060004100000000126000407000000011e0004000000000104" +
  "0000000002040300000003040000000004040800000004080004010000000100060400000000";

const VERDICT_MAP = { flags: 0x8c /* INTERVAL|MAP|CONCAT */, dataType: 0xffffff00, dataLen: 0 } as const;
// A concatenated map without intervals (a hash): nft 1.0.6 sends MAP only, and no field lengths.
const HASH_MAP = { flags: 0x08 /* MAP */, dataType: 0xffffff00, dataLen: 0, fieldLens: [] } as const;
/** The endpoint maps' declarations (model.ts mapDecl): key type ids and field lengths as nft sends them. */
const SHAPES: Record<string, Omit<WireSet, "name">> = {
  "mark,proto,port": {
    ...VERDICT_MAP,
    keyType: 0x0001330d,
    keyLen: 12,
    fieldLens: [4, 1, 2],
    userdata: Buffer.from(UD_TYPE, "hex"),
  },
  "mark,proto,byte": {
    ...VERDICT_MAP,
    keyType: 0x00013304,
    keyLen: 12,
    fieldLens: [4, 1, 1],
    userdata: Buffer.from(UD_TH_MARK, "hex"),
  },
  "proto,port": {
    ...VERDICT_MAP,
    keyType: 0x0000030d,
    keyLen: 8,
    fieldLens: [1, 2],
    userdata: Buffer.from(UD_TYPE, "hex"),
  },
  "proto,byte": {
    ...VERDICT_MAP,
    keyType: 0x00000304,
    keyLen: 8,
    fieldLens: [1, 1],
    userdata: Buffer.from(UD_TH, "hex"),
  },
  "mark,proto,port/hash": {
    ...HASH_MAP,
    keyType: 0x0001330d,
    keyLen: 12,
    userdata: Buffer.from(UD_TYPE, "hex"),
  },
  "proto,port/hash": {
    ...HASH_MAP,
    keyType: 0x0000030d,
    keyLen: 8,
    userdata: Buffer.from(UD_TYPE, "hex"),
  },
};

/** An endpoint map's declaration, or undefined for any other map. */
export function setOf(m: NftMap): WireSet | undefined {
  if (!ENDPOINT_MAP.test(m.name) || m.valueType !== "verdict") return undefined;
  const shape = SHAPES[m.fields.join(",") + (m.interval ? "" : "/hash")];
  return shape ? { name: m.name, ...shape } : undefined;
}

/** Elements as the kernel takes them (interface names: 16 bytes, NUL-padded), or undefined. */
function wire(m: NftMap, els: readonly NftElement[], keyOnly: boolean): WireElement[] | undefined {
  const out: WireElement[] = [];
  for (const e of els) {
    if (m.fields.length === 1 && m.fields[0] === "ifname") {
      const name = e.key[0];
      if (typeof name !== "string" || !isIfname(name) || m.interval) return undefined;
      const key = Buffer.alloc(16);
      key.write(name, "latin1");
      const j = encodeElement(
        { ...m, fields: ["mark"] },
        { key: [{ lo: 0n, hi: 0n }], value: e.value },
        keyOnly,
      );
      if (!j) return undefined;
      out.push({ ...j, key });
      continue;
    }
    const j = encodeElement(m, e, keyOnly);
    if (!j) return undefined;
    out.push(j);
  }
  return out;
}

/** Element deltas (host maps, the stamp) as messages: deletions, then additions. */
export function deltaMessages(table: string, deltas: readonly ElementDelta[]): NfMsg[] | undefined {
  const out: NfMsg[] = [];
  for (const d of deltas) {
    const del = wire(d.map, d.del, true);
    const add = wire(d.map, d.add, false);
    if (!del || !add) return undefined;
    out.push(
      ...elementMessages(table, d.map.name, "del", del),
      ...elementMessages(table, d.map.name, "add", add),
    );
  }
  return out;
}

/** One scope (an endpoint's maps and chains, with the dispatch maps holding its elements) from `had` to `want`. */
export function scopeMessages(
  table: string,
  want: CompiledTable,
  had: CompiledTable,
  nextSetId: () => number,
): NfMsg[] | undefined {
  const hadMaps = new Map(had.maps.map((m) => [m.name, m]));
  const hadChains = new Map(had.chains.map((c) => [c.name, c]));
  const wantMaps = new Set(want.maps.map((m) => m.name));
  const wantChains = new Set(want.chains.map((c) => c.name));
  const out: NfMsg[] = [];
  for (const c of [...want.chains, ...had.chains])
    if (!ENDPOINT_CHAIN.test(c.name) || c.base) return undefined;
  for (const c of want.chains) if (!hadChains.has(c.name)) out.push(newChain(table, c.name));
  for (const m of want.maps) {
    const h = hadMaps.get(m.name);
    if (h && mapSignature(h) !== mapSignature(m)) return undefined;
    if (h) continue;
    const s = setOf(m);
    if (!s) return undefined;
    out.push(newSet(table, s, nextSetId()));
  }
  const late: NfMsg[] = [];
  for (const m of want.maps) {
    const have = hadMaps.get(m.name)?.elements ?? [];
    const haveBy = new Map(have.map((e) => [keyCanon(e.key), e]));
    const wantKeys = new Set<string>();
    const adds: NftElement[] = [];
    const replaced: NftElement[] = [];
    for (const e of m.elements) {
      const k = keyCanon(e.key);
      wantKeys.add(k);
      const h = haveBy.get(k);
      if (h && h.value === e.value) continue;
      if (h) replaced.push(h);
      adds.push(e);
    }
    const removed = have.filter((e) => !wantKeys.has(keyCanon(e.key)));
    // As plan.ts: interval maps refuse overlaps, so their old elements go first;
    // elsewhere removed elements go last (after the rules that replace them).
    const first = m.interval ? [...replaced, ...removed] : replaced;
    const del = wire(m, first, true);
    const add = wire(m, adds, false);
    const gone = wire(m, m.interval ? [] : removed, true);
    if (!del || !add || !gone) return undefined;
    out.push(...elementMessages(table, m.name, "del", del), ...elementMessages(table, m.name, "add", add));
    late.push(...elementMessages(table, m.name, "del", gone));
  }
  for (const c of want.chains) {
    const h = hadChains.get(c.name);
    if (h && chainHash(h) === chainHash(c) && h.rules.length === c.rules.length) continue;
    if (h) out.push(flushChain(table, c.name));
    for (const r of chainRulesWithHash(c)) out.push(newRule(table, ruleOf(c.name, r)));
  }
  out.push(...late);
  const goneChains = had.chains
    .filter((c) => !wantChains.has(c.name))
    .map((c) => c.name)
    .sort();
  for (const n of goneChains) out.push(flushChain(table, n));
  for (const n of had.maps
    .filter((m) => !wantMaps.has(m.name))
    .map((m) => m.name)
    .sort()) {
    if (!ENDPOINT_MAP.test(n)) return undefined;
    out.push(delSet(table, n));
  }
  for (const n of goneChains) out.push(delChain(table, n));
  return out;
}

/**
 * The whole batch for an incremental change without a global part: host deltas,
 * every endpoint scope, the stamp. Undefined when nft must write it; a
 * MembraneError when compile handed over something no writer may encode.
 */
export function objectMessages(
  table: string,
  hosts: readonly ElementDelta[],
  scopes: readonly { want: CompiledTable; had: CompiledTable }[],
  stamp: readonly ElementDelta[],
): NfMsg[] | undefined {
  let setId = 1;
  const next = (): number => setId++;
  try {
    const out: NfMsg[] = [];
    const h = deltaMessages(table, hosts);
    if (!h) return undefined;
    out.push(...h);
    for (const s of scopes) {
      const m = scopeMessages(table, s.want, s.had, next);
      if (!m) return undefined;
      out.push(...m);
    }
    const st = deltaMessages(table, stamp);
    if (!st) return undefined;
    out.push(...st);
    let bytes = 0;
    for (const m of out) bytes += m.body.length + 16;
    return bytes > MAX_BATCH_BYTES ? undefined : out;
  } catch (e) {
    if (e instanceof RuleShapeError) return undefined;
    throw new MembraneError(
      "DATAPATH_STATE_INVALID",
      `Cannot encode the endpoint objects of table ${table}: ${(e as Error).message}`,
      {
        hint: "The compiled table holds a name or value outside the datapath contract (src/datapath/types.ts).",
        cause: e,
      },
    );
  }
}
