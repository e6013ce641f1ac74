/**
 * The ipcache: which identity an address has.
 *
 *   endpoints, nodes         -> exact addresses (cluster side, always win)
 *   CIDR rules, DNS answers  -> prefixes with local identities (outside the cluster)
 *   lookup(ip) = exact cluster address, else longest matching prefix, else world
 *
 * Pure data structure; the engine decides what goes in.
 */
import { familyWidth, mask, parseAddr, type Prefix } from "../labels/cidr.js";
import { ID } from "../identity/reserved.js";

export interface IPCacheEntry {
  readonly prefix: Prefix;
  readonly identity: number;
  readonly source: "endpoint" | "node" | "cidr" | "fqdn";
}

export class IPCache {
  /** "family:addr" of host addresses -> entry (endpoints, nodes) */
  private readonly exact = new Map<string, IPCacheEntry>();
  /** family -> bits -> network address -> entry (outside prefixes) */
  private readonly prefixes = new Map<4 | 6, Map<number, Map<bigint, IPCacheEntry>>>();

  constructor(private readonly dualStack: boolean) {}

  setExact(ip: string, identity: number, source: "endpoint" | "node"): void {
    const a = parseAddr(ip);
    if (!a) return;
    const bits = familyWidth(a.family);
    this.exact.set(`${a.family}:${a.value}`, {
      prefix: { family: a.family, addr: a.value, bits },
      identity,
      source,
    });
  }

  deleteExact(ip: string): void {
    const a = parseAddr(ip);
    if (a) this.exact.delete(`${a.family}:${a.value}`);
  }

  setPrefix(prefix: Prefix, identity: number, source: "cidr" | "fqdn"): void {
    let byBits = this.prefixes.get(prefix.family);
    if (!byBits) this.prefixes.set(prefix.family, (byBits = new Map()));
    let byAddr = byBits.get(prefix.bits);
    if (!byAddr) byBits.set(prefix.bits, (byAddr = new Map()));
    byAddr.set(prefix.addr, { prefix, identity, source });
  }

  deletePrefix(prefix: Prefix): void {
    this.prefixes.get(prefix.family)?.get(prefix.bits)?.delete(prefix.addr);
  }

  /** The identity of an address, and the entry that gave it (undefined = world). */
  lookup(ip: string): { identity: number; entry?: IPCacheEntry } {
    const a = parseAddr(ip);
    if (!a) return { identity: ID.world };
    const ex = this.exact.get(`${a.family}:${a.value}`);
    if (ex) return { identity: ex.identity, entry: ex };
    const byBits = this.prefixes.get(a.family);
    if (byBits) {
      const lens = [...byBits.keys()].sort((x, y) => y - x);
      for (const bits of lens) {
        const e = byBits.get(bits)?.get(a.value & mask(a.family, bits));
        if (e) return { identity: e.identity, entry: e };
      }
    }
    return { identity: this.worldFor(a.family) };
  }

  worldFor(family: 4 | 6): number {
    if (!this.dualStack) return ID.world;
    return family === 4 ? ID.worldIPv4 : ID.worldIPv6;
  }

  /** Every entry, for the datapath (longest prefix wins there too). */
  *entries(): Iterable<IPCacheEntry> {
    yield* this.exact.values();
    for (const byBits of this.prefixes.values()) for (const byAddr of byBits.values()) yield* byAddr.values();
  }
}
