/**
 * Changes of the authenticated pairs (auth-table.ts) as one nf_tables batch, written through the
 * agent's own nfnetlink socket (nfnl/socket.ts) instead of an `nft` process: a new pair's entry
 * costs what the kernel does, not a process start plus nft reading the node's whole ruleset (the
 * write that followed each held first packet: 46 ms p50 on a loaded 2-core node, competing for
 * the CPU with the connection it had just released).
 *
 *   @pairs4/6: type mark . mark . ipv4_addr . ipv4_addr (ipv6_addr); flags interval, timeout
 *     (a concatenated interval set: the kernel's pipapo). Each element: a key and a key end,
 *     every field padded to 4 bytes; marks big-endian (nft byte-swaps a mark in an interval
 *     concatenation: nfnl/encode.ts), addresses in network order, the first and last address of
 *     each pod CIDR; NFTA_SET_ELEM_TIMEOUT in milliseconds.
 *   add (or refresh) = NEWSETELEM timeout 1s, DELSETELEM, NEWSETELEM timeout N, as the text
 *     `add; delete; add` of auth-table.ts (an existing element keeps its old timeout on `add`);
 *   remove = NEWSETELEM timeout 1s, DELSETELEM (a missing element is no error).
 * Messages of several writes keep their order in one batch; the kernel applies it whole or not at
 * all, so a refused batch leaves nothing half written (the caller then writes the same with nft).
 */
import type { NfMsg } from "../abi/nft-object-wire.js";
import { elementMessages } from "../abi/nft-object-wire.js";
import type { WireElement } from "../abi/nft-setelem-wire.js";
import { MembraneError } from "../errors.js";
import { familyWidth, parsePrefix, type Prefix } from "../labels/cidr.js";
import { IDENTITY_MASK } from "../abi/marks.js";

/** One write of the auth table: pairs' elements added for `seconds`, or removed. */
export interface AuthWrite {
  readonly kind: "add" | "remove";
  readonly elements: readonly { readonly set: "pairs4" | "pairs6"; readonly key: AuthElementKey }[];
  /** add: the entries' lifetime. */
  readonly seconds?: number;
}

/** An element as auth-table.ts pairElements makes it: identities and canonical prefixes. */
export interface AuthElementKey {
  readonly src: number;
  readonly dst: number;
  readonly srcNet: string;
  readonly dstNet: string;
}

const bad = (why: string): MembraneError =>
  new MembraneError("AUTH_SETUP_FAILED", `Cannot encode an auth pair: ${why}`);

function addrBytes(p: Prefix, last: boolean, out: Buffer, o: number): number {
  const width = familyWidth(p.family);
  const host = (1n << BigInt(width - p.bits)) - 1n;
  const v = last ? p.addr | host : p.addr & ~host;
  if (p.family === 4) {
    out.writeUInt32BE(Number(v), o);
    return o + 4;
  }
  out.writeBigUInt64BE(v >> 64n, o);
  out.writeBigUInt64BE(v & 0xffffffffffffffffn, o + 8);
  return o + 16;
}

/** Key and key end of one element (throws AUTH_SETUP_FAILED on an identity or prefix out of shape). */
export function authElement(set: "pairs4" | "pairs6", k: AuthElementKey): { key: Buffer; keyEnd: Buffer } {
  const family = set === "pairs4" ? 4 : 6;
  for (const [what, id] of [
    ["source", k.src],
    ["destination", k.dst],
  ] as const)
    if (!Number.isInteger(id) || id <= 0 || id > IDENTITY_MASK) throw bad(`${what} ${id} is not an identity`);
  const sn = parsePrefix(k.srcNet);
  const dn = parsePrefix(k.dstNet);
  if (!sn || sn.family !== family) throw bad(`source network ${JSON.stringify(k.srcNet)} is not an IPv${family} prefix`); // prettier-ignore
  if (!dn || dn.family !== family) throw bad(`destination network ${JSON.stringify(k.dstNet)} is not an IPv${family} prefix`); // prettier-ignore
  const size = 8 + 2 * (family === 4 ? 4 : 16);
  const make = (last: boolean): Buffer => {
    const b = Buffer.alloc(size);
    b.writeUInt32BE(k.src >>> 0, 0);
    b.writeUInt32BE(k.dst >>> 0, 4);
    addrBytes(dn, last, b, addrBytes(sn, last, b, 8));
    return b;
  };
  return { key: make(false), keyEnd: make(true) };
}

/** The batch's messages for `writes`, in order (frameBatch frames them). */
export function authWriteMessages(table: string, writes: readonly AuthWrite[]): NfMsg[] {
  const out: NfMsg[] = [];
  for (const w of writes) {
    if (w.kind === "add" && !(Number.isInteger(w.seconds) && (w.seconds as number) >= 1))
      throw bad(`an entry's lifetime ${String(w.seconds)} is not a whole number of seconds >= 1`);
    for (const set of ["pairs4", "pairs6"] as const) {
      const keys = w.elements.filter((e) => e.set === set).map((e) => authElement(set, e.key));
      if (keys.length === 0) continue;
      const withTimeout = (ms: number): WireElement[] =>
        keys.map((k) => ({ ...k, set: true, timeoutMs: ms }));
      out.push(...elementMessages(table, set, "add", withTimeout(1000)));
      out.push(...elementMessages(table, set, "del", keys));
      if (w.kind === "add") out.push(...elementMessages(table, set, "add", withTimeout((w.seconds as number) * 1000))); // prettier-ignore
    }
  }
  return out;
}
