/**
 * The ipcache: which identity an address has.
 *
 *   endpoints, nodes         -> exact addresses (cluster side, always win)
 *   CIDR rules, DNS answers  -> prefixes with local identities (outside the cluster)
 *   lookup(ip) = exact cluster address, else longest matching prefix, else world
 *
 * Pure data structure; the engine decides what goes in.
 */
import { addrString, familyWidth, mask, parseAddr, type Prefix } from "../labels/cidr.js";
import { HostTable, type HostTableView } from "./hosts.js";
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
  /** The exact entries again, as address text -> identity with a change journal (for the datapath). */
  private readonly hostTable = new HostTable();
  /** Bumped whenever a prefix entry changes (the datapath recompiles the prefix maps then). */
  private prefixRev = 0;

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
    this.hostTable.set(addrString(a.family, a.value), identity);
  }

  deleteExact(ip: string): void {
    const a = parseAddr(ip);
    if (!a) return;
    this.exact.delete(`${a.family}:${a.value}`);
    this.hostTable.delete(addrString(a.family, a.value));
  }

  /** The exact entries as address -> identity, with revision and change journal. */
  get hosts(): HostTableView {
    return this.hostTable;
  }

  /** Changes whenever a prefix entry (CIDR, FQDN) is set or deleted. */
  get prefixRevision(): number {
    return this.prefixRev;
  }

  setPrefix(prefix: Prefix, identity: number, source: "cidr" | "fqdn"): void {
    let byBits = this.prefixes.get(prefix.family);
    if (!byBits) this.prefixes.set(prefix.family, (byBits = new Map()));
    let byAddr = byBits.get(prefix.bits);
    if (!byAddr) byBits.set(prefix.bits, (byAddr = new Map()));
    const cur = byAddr.get(prefix.addr);
    if (cur && cur.identity === identity && cur.source === source) return;
    byAddr.set(prefix.addr, { prefix, identity, source });
    this.prefixRev++;
  }

  deletePrefix(prefix: Prefix): void {
    if (this.prefixes.get(prefix.family)?.get(prefix.bits)?.delete(prefix.addr)) this.prefixRev++;
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

  /** Every entry (exact ones first). */
  *entries(): Iterable<IPCacheEntry> {
    yield* this.exact.values();
    yield* this.prefixEntries();
  }

  /** The prefix entries only (CIDR, FQDN): the exact ones override them (see `hosts`). */
  *prefixEntries(): Iterable<IPCacheEntry> {
    for (const byBits of this.prefixes.values()) for (const byAddr of byBits.values()) yield* byAddr.values();
  }
}
