/**
 * Maglev's lookup table (Eisenbud et al., NSDI 2016, section 3.4): each backend
 * walks its own permutation of the M slots (offset and skip from two hashes of
 * its name) and the backends take turns claiming their next free slot. Every
 * node computes the same table from the same backends, and a backend change
 * moves about M/N slots. Pure. M is prime (datapath/lb-compile.ts MAGLEV_M).
 */
import { createHash } from "node:crypto";
import { MAGLEV_M } from "../datapath/lb-compile.js";

function h(s: string, salt: string): number {
  return createHash("sha256").update(salt).update(s).digest().readUInt32BE(0);
}

/** Slot -> index into `backends` (M slots); `backends` must not be empty. */
export function maglevTable(backends: readonly string[], m = MAGLEV_M): number[] {
  const n = backends.length;
  const offset = backends.map((b) => h(b, "offset") % m);
  const skip = backends.map((b) => (h(b, "skip") % (m - 1)) + 1);
  const next = new Array<number>(n).fill(0);
  const table = new Array<number>(m).fill(-1);
  let filled = 0;
  for (;;) {
    for (let i = 0; i < n; i++) {
      let c = ((offset[i] as number) + (next[i] as number) * (skip[i] as number)) % m;
      while (table[c] !== -1) {
        next[i] = (next[i] as number) + 1;
        c = ((offset[i] as number) + (next[i] as number) * (skip[i] as number)) % m;
      }
      table[c] = i;
      next[i] = (next[i] as number) + 1;
      if (++filled === m) return table;
    }
  }
}
