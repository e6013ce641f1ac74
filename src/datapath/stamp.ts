/**
 * The table's stamp: a digest of everything compiled into it, kept in the
 * kernel next to it, so that a restarted agent can tell "the kernel holds
 * exactly what I would write" by reading one small map instead of the whole
 * table (whose read-back costs seconds at 1,000 endpoints).
 *
 *   digest = FORMAT + global part + Σ endpoint parts + Σ policy groups + Σ host elements   (mod 2^64)
 *   map stamp { type mark : mark; }  elements { 0 : low 32 bits, 1 : high 32 bits }
 *
 * A sum of per-part hashes, so that a change updates it in time that follows
 * the change: subtract what went, add what came. The stamp says what the
 * agent wrote, not what the kernel holds now: a hand edit that leaves the
 * stamp alone is found by the periodic verify (Reconciler.verify), which
 * reads the table in the background.
 */
import * as crypto from "node:crypto";
import type { EndpointParts } from "./compile-endpoint.js";
import { DISPATCH_MAPS } from "./dispatch.js";
import type { GroupPart } from "./policy-groups.js";
import {
  chainHash,
  elementCanon,
  mapDecl,
  type CompiledTable,
  type NftElement,
  type NftMap,
} from "./model.js";

export const STAMP_MAP = "stamp";
/**
 * Bumped when the compiled form changes meaning, so an old table never matches.
 * v6: policy groups (policy-groups.ts) and the established fast path (dispatch.ts
 * egress_est4/6). A restart after the upgrade finds the v4 stamp, reads the table
 * back and rewrites it once (by delta, in one batch).
 */
const FORMAT = "membrane-table-v6";
const MOD = 1n << 64n;

/** crypto.hash (Node >= 20.12; package.json allows any Node 20): one-shot, no Hash object. */
const oneShot = (crypto as { hash?: (alg: string, data: string, enc: "buffer") => Buffer }).hash;

/**
 * The first 64 bits of the text's SHA-256. A restart hashes every host address
 * (50,000 at scale): the one-shot form costs half the CPU of a Hash object per text.
 */
export function h64(text: string): bigint {
  const d = oneShot ? oneShot("sha256", text, "buffer") : crypto.createHash("sha256").update(text).digest();
  return d.readBigUInt64BE(0);
}

export const add64 = (a: bigint, b: bigint): bigint => (a + b) % MOD;
export const sub64 = (a: bigint, b: bigint): bigint => (a - b + MOD) % MOD;

/**
 * What is hashed of maps and chains: elements by their canonical keys (numbers,
 * not the nft spelling, which costs address formatting), chains by their content
 * hash (model.ts, computed once per chain and also written in the chain's first
 * rule) rather than by their whole text.
 */
function tableText(maps: readonly NftMap[], chains: CompiledTable["chains"]): string {
  const out: string[] = [];
  for (const m of maps) {
    out.push(`map ${m.name} ${mapDecl(m)}`);
    for (const e of m.elements) out.push(`${elementCanon(e)}:${e.value}`);
  }
  for (const c of chains) out.push(`chain ${c.name} ${c.rules.length} ${chainHash(c)}`);
  return out.join("\n");
}

/** The global part (its maps carry no dispatch or host elements). */
export function globalDigest(global: CompiledTable): bigint {
  return h64(
    FORMAT +
      "\n" +
      tableText(
        global.maps.filter((m) => m.name !== STAMP_MAP),
        global.chains,
      ),
  );
}

export function partDigest(id: number, part: EndpointParts): bigint {
  const dispatch = DISPATCH_MAPS.map((d) => part.dispatch[d.part]).map((e) =>
    e ? `${e.key.map((k) => (typeof k === "string" ? k : `${k.lo}-${k.hi}`)).join(".")}:${e.value}` : "-",
  );
  return h64(`ep ${id}\n${dispatch.join(",")}\n${tableText([], part.chains)}`);
}

export function groupDigest(g: GroupPart): bigint {
  return h64(`group ${g.name}\n${tableText(g.maps, g.chains)}`);
}

export function hostDigest(ip: string, identity: number): bigint {
  return h64(`host ${ip}=${identity}`);
}

export function stampMap(digest: bigint | undefined): NftMap {
  const elements: NftElement[] =
    digest === undefined
      ? []
      : [
          { key: [{ lo: 0n, hi: 0n }], value: String(Number(digest & 0xffffffffn)) },
          { key: [{ lo: 1n, hi: 1n }], value: String(Number(digest >> 32n)) },
        ];
  return { name: STAMP_MAP, fields: ["mark"], valueType: "mark", interval: false, elements };
}

/** The digest a read-back of the stamp map holds, or undefined. */
export function digestOf(
  elements: readonly { key: readonly unknown[]; value: string }[],
): bigint | undefined {
  let lo: bigint | undefined;
  let hi: bigint | undefined;
  for (const e of elements) {
    const k = e.key[0] as { lo: bigint } | undefined;
    if (k?.lo === 0n) lo = BigInt(e.value);
    if (k?.lo === 1n) hi = BigInt(e.value);
  }
  return lo === undefined || hi === undefined ? undefined : (hi << 32n) | lo;
}
