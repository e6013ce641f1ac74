/**
 * The table of every node's identity claims (`cluster/identities/<node>/<id>`,
 * keys.ts), and the rules that turn it into one answer on every node. Pure: the
 * watched cache (identities.ts) feeds it; it does no I/O.
 *
 *   claims (node, id, labels, revision) --> owner(id): the claim with the smallest revision
 *                                              --> numberOf(labels): the number owned by these labels,
 *                                                  the earliest owner if two nodes raced
 *                                              --> free(): the smallest number nobody claims
 *
 * A claim whose labels differ from its number's owner is a loser (its node
 * withdraws it); a claim with the owner's labels is a reference: the number
 * stays taken as long as any node holds one (per-node references, each on its
 * node's lease, so a dead node's references go with it).
 *
 * A claim's rank is the revision of its current content (etcd's modRevision),
 * not of its key's creation: a node that rewrote its claim of a number with
 * other labels kept the key's createRevision and so took the number's place
 * from every other node (a relabel hijack); a rewritten claim is now a new
 * claim, later than every claim it contradicts. The rank is read the same way
 * from a list and from a watch (both give modRevision), so every node agrees.
 */
import type { IdentityClaimV1 } from "./keys.js";
import { CLUSTER_KEYS, splitNodeKey } from "./keys.js";

export interface IdentityClaim {
  readonly key: string;
  readonly node: string;
  readonly id: number;
  /** The labels as one string (sorted `source:key=value`, joined by ","). */
  readonly labels: string;
  /** The revision of the claim's current content (modRevision): its rank. */
  readonly revision: number;
}

/** The canonical text of a label list (the claims' `labels`): sorted, joined by ",". */
export function labelsText(labels: readonly string[]): string {
  return [...labels].sort().join(",");
}

/** Parses a claim; undefined for a key or value of the wrong shape (ignored, never trusted). */
export function parseClaim(key: string, value: string, revision: number): IdentityClaim | undefined {
  const nk = splitNodeKey(CLUSTER_KEYS.identities, key);
  if (!nk || !/^[1-9][0-9]{0,9}$/.test(nk.rest)) return undefined;
  let rec: IdentityClaimV1;
  try {
    rec = JSON.parse(value) as IdentityClaimV1;
  } catch {
    return undefined;
  }
  if (rec?.v !== 1 || !Array.isArray(rec.labels) || !rec.labels.every((l) => typeof l === "string"))
    return undefined;
  return { key, node: nk.node, id: Number(nk.rest), labels: labelsText(rec.labels), revision };
}

/** Which of two claims came first: smaller revision, then node name (deterministic everywhere). */
function earlier(a: IdentityClaim, b: IdentityClaim): boolean {
  return a.revision !== b.revision ? a.revision < b.revision : a.node < b.node;
}

export class ClaimTable {
  private readonly byKey = new Map<string, IdentityClaim>();
  private readonly byId = new Map<number, Map<string, IdentityClaim>>();
  private readonly byLabels = new Map<string, Set<number>>();

  get size(): number {
    return this.byKey.size;
  }

  clear(): void {
    this.byKey.clear();
    this.byId.clear();
    this.byLabels.clear();
  }

  get(key: string): IdentityClaim | undefined {
    return this.byKey.get(key);
  }

  /** Adds or replaces a claim (its rank is the put's revision, whatever the key held before). */
  put(c: IdentityClaim): void {
    const claim = c;
    if (this.byKey.has(c.key)) this.delete(c.key);
    this.byKey.set(c.key, claim);
    let m = this.byId.get(claim.id);
    if (!m) this.byId.set(claim.id, (m = new Map()));
    m.set(claim.key, claim);
    let s = this.byLabels.get(claim.labels);
    if (!s) this.byLabels.set(claim.labels, (s = new Set()));
    s.add(claim.id);
  }

  delete(key: string): void {
    const c = this.byKey.get(key);
    if (!c) return;
    this.byKey.delete(key);
    const m = this.byId.get(c.id);
    m?.delete(key);
    if (m && m.size === 0) this.byId.delete(c.id);
    const stillLabelled = m && [...m.values()].some((o) => o.labels === c.labels);
    if (!stillLabelled) {
      const s = this.byLabels.get(c.labels);
      s?.delete(c.id);
      if (s && s.size === 0) this.byLabels.delete(c.labels);
    }
  }

  /** The claim that owns number `id`: the earliest one. */
  owner(id: number): IdentityClaim | undefined {
    let best: IdentityClaim | undefined;
    for (const c of this.byId.get(id)?.values() ?? []) if (!best || earlier(c, best)) best = c;
    return best;
  }

  /** True while some node claims `id` (for any labels): the number is not free. */
  taken(id: number): boolean {
    return this.byId.has(id);
  }

  /** The cluster's number for these labels (labelsText): the earliest-owned number whose owner has them. */
  numberOf(labels: string): number | undefined {
    let best: IdentityClaim | undefined;
    for (const id of this.byLabels.get(labels) ?? []) {
      const o = this.owner(id);
      if (o && o.labels === labels && (!best || earlier(o, best))) best = o;
    }
    return best?.id;
  }

  /** The smallest number in [min, max] no claim holds and `also` does not exclude; undefined when none. */
  free(min: number, max: number, also: (id: number) => boolean = () => false): number | undefined {
    for (let id = min; id <= max; id++) if (!this.byId.has(id) && !also(id)) return id;
    return undefined;
  }

  /** Every claim of `node`. */
  ofNode(node: string): IdentityClaim[] {
    return [...this.byKey.values()].filter((c) => c.node === node);
  }

  /** Every number claimed, with its owner's labels (for views and tests). */
  numbers(): Map<number, string> {
    const out = new Map<number, string>();
    for (const id of this.byId.keys()) {
      const o = this.owner(id);
      if (o) out.set(id, o.labels);
    }
    return out;
  }
}
