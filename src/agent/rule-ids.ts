/**
 * Rule ids for the kernel's log prefixes: stable per rule element, so that a
 * policy change renames nothing it does not touch.
 *
 *   rule element key ("CiliumNetworkPolicy/ns/name/spec.ingress[0]")
 *     --FNV-1a, 20 bits--> preferred id --taken by another key?--> next free id
 *
 * The id appears in chain names (e<ep>_in_a<id>) and NFLOG prefixes
 * (mbr:a:e<ep>:in:r<id>), so an id that moved would rewrite every endpoint
 * using the rule; ids given in order of appearance (as before) moved every
 * later rule's id when one was added. A restarted agent hands out the same ids
 * for the same rules (new keys of one build are numbered in sorted order),
 * except after a hash collision resolved in a different order: then its first
 * enforce rewrites the few chains concerned, which is correct, only not free.
 */

const SPACE = 0xfffff; // ids 1..1,048,575

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class RuleIds {
  private readonly byKey = new Map<string, number>();
  private readonly byId = new Map<number, string>();

  /** Ids for `keys`, allocating new ones (in sorted key order); keys not listed are released. */
  assign(keys: ReadonlySet<string>): Map<string, number> {
    for (const [k, id] of this.byKey) {
      if (keys.has(k)) continue;
      this.byKey.delete(k);
      this.byId.delete(id);
    }
    const fresh = [...keys].filter((k) => !this.byKey.has(k)).sort();
    for (const k of fresh) {
      let id = (fnv1a(k) % SPACE) + 1;
      while (this.byId.has(id)) id = (id % SPACE) + 1;
      this.byKey.set(k, id);
      this.byId.set(id, k);
    }
    return this.byKey;
  }
}
