/**
 * SelectorCache: for every peer selector any policy uses, the identities it
 * selects right now.
 *
 *   identities (added / removed) ---+
 *                                   v
 *   policies' peer selectors --> SelectorCache --> selections(peer) -> Set<identity>
 *                                   |
 *                                   +--> onChange(selectorKeys) : who must recompute
 *
 * Selections are computed once per distinct selector, not once per rule or
 * per endpoint. Endpoint selectors are narrowed through an index of identity
 * labels (key=value -> identities), so that selecting within one namespace
 * does not walk every identity of the cluster.
 */
import type { Identity } from "../identity/allocator.js";
import { peerKey, peerSelects, type PeerContext } from "./peer.js";
import type { PeerSelector } from "./types.js";

interface Entry {
  readonly peer: PeerSelector;
  readonly selected: Set<number>;
  users: number;
}

export class SelectorCache {
  private readonly entries = new Map<string, Entry>();
  private readonly identities = new Map<number, Identity>();
  /** label key -> value -> identities having that label (any source) */
  private readonly index = new Map<string, Map<string, Set<number>>>();

  constructor(private readonly ctx: PeerContext) {}

  /** Registers a user of the selector; returns its key. */
  add(peer: PeerSelector): string {
    const key = peerKey(peer);
    const e = this.entries.get(key);
    if (e) {
      e.users++;
      return key;
    }
    const selected = new Set<number>();
    for (const ident of this.candidates(peer)) if (peerSelects(peer, ident, this.ctx)) selected.add(ident.id);
    this.entries.set(key, { peer, selected, users: 1 });
    return key;
  }

  /** Drops a user; the selector is forgotten when it has none. */
  remove(key: string): void {
    const e = this.entries.get(key);
    if (e && --e.users <= 0) this.entries.delete(key);
  }

  selections(key: string): ReadonlySet<number> {
    return this.entries.get(key)?.selected ?? EMPTY;
  }

  identity(id: number): Identity | undefined {
    return this.identities.get(id);
  }

  allIdentities(): Iterable<Identity> {
    return this.identities.values();
  }

  get identityCount(): number {
    return this.identities.size;
  }

  private identityRev = 0;
  /** Changes whenever an identity is added, replaced or removed (consumers skip work when it did not). */
  get identityRevision(): number {
    return this.identityRev;
  }

  /** Adds or replaces an identity; returns the keys of selectors whose selection changed. */
  upsertIdentity(ident: Identity): string[] {
    const old = this.identities.get(ident.id);
    // The very same identity again (an address more for an identity in use): every
    // selection already reflects it (selectors added since were evaluated against it).
    if (old === ident) return [];
    this.identityRev++;
    if (old) this.unindex(old);
    this.identities.set(ident.id, ident);
    this.indexIdentity(ident);
    const changed: string[] = [];
    for (const [key, e] of this.entries) {
      const now = peerSelects(e.peer, ident, this.ctx);
      if (now !== e.selected.has(ident.id)) {
        if (now) e.selected.add(ident.id);
        else e.selected.delete(ident.id);
        changed.push(key);
      }
    }
    return changed;
  }

  /** Removes an identity; returns the keys of selectors that had selected it. */
  removeIdentity(id: number): string[] {
    const old = this.identities.get(id);
    if (!old) return [];
    this.identityRev++;
    this.unindex(old);
    this.identities.delete(id);
    const changed: string[] = [];
    for (const [key, e] of this.entries) if (e.selected.delete(id)) changed.push(key);
    return changed;
  }

  /** Re-evaluates every selector (after services change, which selectors depend on). */
  refreshAll(): string[] {
    const changed: string[] = [];
    for (const [key, e] of this.entries) {
      const next = new Set<number>();
      for (const ident of this.candidates(e.peer))
        if (peerSelects(e.peer, ident, this.ctx)) next.add(ident.id);
      if (next.size !== e.selected.size || [...next].some((id) => !e.selected.has(id))) {
        e.selected.clear();
        for (const id of next) e.selected.add(id);
        changed.push(key);
      }
    }
    return changed;
  }

  /** Identities that may match: narrowed by the index for endpoint selectors with an equality requirement. */
  private *candidates(peer: PeerSelector): Iterable<Identity> {
    if (peer.kind === "endpoints") {
      let best: Set<number> | undefined;
      for (const r of peer.selector.requirements) {
        if (r.operator !== "In") continue;
        const byValue = this.index.get(r.key);
        const union = new Set<number>();
        for (const v of r.values) for (const id of byValue?.get(v) ?? []) union.add(id);
        if (!best || union.size < best.size) best = union;
      }
      if (best) {
        for (const id of best) {
          const ident = this.identities.get(id);
          if (ident) yield ident;
        }
        return;
      }
    }
    yield* this.identities.values();
  }

  private indexIdentity(ident: Identity): void {
    for (const l of ident.labels) {
      let byValue = this.index.get(l.key);
      if (!byValue) this.index.set(l.key, (byValue = new Map()));
      let ids = byValue.get(l.value);
      if (!ids) byValue.set(l.value, (ids = new Set()));
      ids.add(ident.id);
    }
  }

  private unindex(ident: Identity): void {
    for (const l of ident.labels) this.index.get(l.key)?.get(l.value)?.delete(ident.id);
  }
}

const EMPTY: ReadonlySet<number> = new Set();
