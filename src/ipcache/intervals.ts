/**
 * ipcache prefixes -> disjoint address intervals for an nft interval map.
 *
 *   10.0.0.0/8 -> 300, 10.1.2.3/32 -> 400          (longest prefix wins)
 *     => 0.0.0.0-9.255.255.255 : 2, 10.0.0.0-10.1.2.2 : 300, 10.1.2.3 : 400,
 *        10.1.2.4-10.255.255.255 : 300, 11.0.0.0-255.255.255.255 : 2
 *
 * nft refuses overlapping intervals in one map, so nesting is flattened here,
 * and every address is covered (unmatched = world) so that a single map
 * lookup always sets the identity.
 */
import { MembraneError } from "../errors.js";
import { parsePrefix } from "../labels/cidr.js";

/** An inclusive address range (structurally the datapath's `Interval`). */
export interface Interval {
  lo: bigint;
  hi: bigint;
}

export interface IdentityInterval extends Interval {
  identity: number;
}

/**
 * Flattens prefixes of one family. Prefixes either nest or are disjoint, so a
 * sweep in (start, widest first) order with a stack of open prefixes yields the
 * pieces; adjacent pieces with the same identity are merged. When the same
 * prefix appears twice, the later entry wins.
 */
export function flattenPrefixes(
  items: readonly { lo: bigint; hi: bigint; identity: number }[],
  width: number,
  background: number,
): IdentityInterval[] {
  const max = (1n << BigInt(width)) - 1n;
  const sorted = items
    .map((it, i) => ({ ...it, i }))
    .sort((a, b) =>
      a.lo !== b.lo ? (a.lo < b.lo ? -1 : 1) : a.hi !== b.hi ? (a.hi > b.hi ? -1 : 1) : a.i - b.i,
    );
  const out: IdentityInterval[] = [];
  const emit = (lo: bigint, hi: bigint, identity: number): void => {
    if (lo > hi) return;
    const last = out[out.length - 1];
    if (last && last.identity === identity && last.hi + 1n === lo) last.hi = hi;
    else out.push({ lo, hi, identity });
  };
  const stack: { lo: bigint; hi: bigint; identity: number }[] = [{ lo: 0n, hi: max, identity: background }];
  let pos = 0n;
  for (const it of sorted) {
    let top = stack[stack.length - 1];
    while (top && top.hi < it.lo) {
      emit(pos, top.hi, top.identity);
      pos = top.hi + 1n;
      stack.pop();
      top = stack[stack.length - 1];
    }
    if (top && top.lo === it.lo && top.hi === it.hi && stack.length > 1) {
      top.identity = it.identity; // duplicate prefix: later wins
      continue;
    }
    if (top) emit(pos, it.lo - 1n, top.identity);
    pos = it.lo;
    stack.push({ lo: it.lo, hi: it.hi, identity: it.identity });
  }
  while (stack.length > 0) {
    const top = stack.pop();
    if (!top) break;
    emit(pos, top.hi, top.identity);
    pos = top.hi + 1n;
  }
  return out;
}

/** Splits the ipcache by family and flattens each; unmatched addresses get `background`. */
export function flattenIpcache(
  ipcache: readonly { prefix: string; identity: number }[],
  background: number,
): { v4: IdentityInterval[]; v6: IdentityInterval[] } {
  const v4: { lo: bigint; hi: bigint; identity: number }[] = [];
  const v6: { lo: bigint; hi: bigint; identity: number }[] = [];
  ipcache.forEach((e, i) => {
    const p = parsePrefix(e.prefix, true);
    if (!p) {
      throw new MembraneError(
        "DATAPATH_STATE_INVALID",
        `Cannot compile the ipcache: "${e.prefix}" is not a prefix`,
        {
          location: { path: `ipcache[${i}].prefix` },
          hint: "Use addr/bits, e.g. 10.0.0.0/8 or fd00::/64.",
        },
      );
    }
    const width = p.family === 4 ? 32 : 128;
    const size = (1n << BigInt(width - p.bits)) - 1n;
    (p.family === 4 ? v4 : v6).push({ lo: p.addr, hi: p.addr + size, identity: e.identity });
  });
  return { v4: flattenPrefixes(v4, 32, background), v6: flattenPrefixes(v6, 128, background) };
}
