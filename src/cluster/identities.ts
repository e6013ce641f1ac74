/**
 * Cluster-wide identities (cluster mode): the same security-relevant labels get
 * the same number on every node.
 *
 *   etcd cluster/identities/<node>/<id> --list + watch--> ClaimTable (identity-claims.ts)
 *                                                              |
 *   allocate(labels) --claim on this node's lease, read back, keep or withdraw--> number
 *   release(id)      --delete this node's claim (the number is free once no node claims it)
 *
 * The scheme is keys.ts's: a node claims `cluster/identities/<node>/<id>` =
 * {v: 1, labels} on its lease; the owner of a number is its claim with the
 * smallest modRevision (identity-claims.ts: a rewritten claim is a new one); the number of a label set is the earliest-owned
 * number whose owner has those labels. allocate() reuses that number when some
 * node holds it, else takes the smallest number no claim holds; it puts its
 * claim, waits until the watched cache has seen its own put (the cache is then
 * complete up to that revision: every earlier claim is in it) and only then
 * returns the number; a loser withdraws its claim and claims again. A number is
 * never reused while any node still holds a claim on it; a dead node's claims
 * vanish with its lease. Calls are serialized: one node never races itself.
 *
 * Restarts: reclaim(id, labels) puts the claim again (its rank is the new put's,
 * but while the previous run's claim lives nobody claims the number for other
 * labels, and other nodes' references carry the same labels), then validates
 * it as allocate() does. etcd keeps leases across its
 * own restarts; the watch resumes by itself, and a watch error re-lists.
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { CLUSTER_ID_MAX, CLUSTER_ID_MIN } from "../identity/reserved.js";
import type { StoreLease } from "../store/etcd.js";
import type { TxnOp, Unsubscribe, WatchEvent } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { ClaimTable, labelsText, parseClaim } from "./identity-claims.js";
import { CLUSTER_KEYS, identitiesPrefix, type IdentityClaimV1 } from "./keys.js";

export interface ClusterIdentitiesParams {
  readonly ctx: ClusterContext;
  /** The cluster identity range (default 256..65535, as the local allocator's). */
  readonly min?: number;
  readonly max?: number;
  /** How long to wait for the watch to show this node's own put before reading the prefix instead (default 2 s). */
  readonly settleMs?: number;
  /** How many claims one allocate() may try before giving up (default 16). */
  readonly attempts?: number;
}

export class ClusterIdentities {
  readonly claims = new ClaimTable();
  /** This node's confirmed claims: labels text -> number, and back. */
  private readonly held = new Map<string, number>();
  private readonly heldById = new Map<number, string>();
  /** The cache holds every change up to this revision. */
  private rev = 0;
  private readonly waiters = new Set<{ rev: number; done: () => void }>();
  private chain: Promise<unknown> = Promise.resolve();
  private unwatch: Unsubscribe | undefined;
  private stopped = false;
  private relisting: Promise<void> | undefined;
  /** Numbers released whose claim is still to be deleted (etcd could not be reached). */
  private readonly orphans = new Set<number>();
  private readonly log: Logger;
  private readonly min: number;
  private readonly max: number;
  private lease: StoreLease;
  private unrenew: (() => void) | undefined;

  constructor(private readonly p: ClusterIdentitiesParams) {
    this.log = p.ctx.logger;
    this.min = p.min ?? CLUSTER_ID_MIN;
    this.max = p.max ?? CLUSTER_ID_MAX;
    this.lease = p.ctx.lease;
  }

  /** Lists every claim and watches for changes (throws CLUSTER_UNAVAILABLE when etcd cannot be read). */
  async start(): Promise<void> {
    // After the node's lease was lost and granted anew, the claims went with it: put them back.
    this.unrenew ??= this.p.ctx.onLeaseRenewed?.((lease) => this.reassert(lease));
    await this.relist();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unrenew?.();
    this.unrenew = undefined;
    // A list in flight may still open its watch (it checks `stopped` before, not after): let it end first.
    await this.relisting?.catch(() => undefined);
    await this.unwatch?.();
    this.unwatch = undefined;
    for (const w of this.waiters) w.done();
  }

  /** The number this node holds (confirmed) for these labels; undefined when it holds none. */
  heldNumber(labels: readonly string[]): number | undefined {
    return this.held.get(labelsText(labels));
  }

  /** This node's confirmed numbers. */
  heldNumbers(): ReadonlySet<number> {
    return new Set(this.heldById.keys());
  }

  /** The cluster's number for these labels, as far as the cache knows (no claim of this node needed). */
  numberOf(labels: readonly string[]): number | undefined {
    return this.claims.numberOf(labelsText(labels));
  }

  /** The labels that own number `id` in the cluster (from the cache). */
  labelsOf(id: number): string[] | undefined {
    const o = this.claims.owner(id);
    return o ? (o.labels === "" ? [] : o.labels.split(",")) : undefined;
  }

  /** The cluster number for `labels`, claimed by this node (see the file comment). */
  allocate(labels: readonly string[]): Promise<number> {
    return this.serial(() => this.take(labelsText(labels), undefined));
  }

  /** After a restart: claims `id` for `labels` again; returns the number to use (`id`, or the cluster's if it lost it). */
  reclaim(id: number, labels: readonly string[]): Promise<number> {
    return this.serial(() => this.take(labelsText(labels), id));
  }

  /**
   * Withdraws this node's claim on `id` (no local endpoint uses it any more). The number stops being
   * this node's at once (heldNumber no longer gives it); the claim is deleted in turn, and again later
   * if etcd could not be reached (until then it only keeps the number taken).
   */
  release(id: number): Promise<void> {
    const labels = this.heldById.get(id);
    if (labels === undefined) return Promise.resolve();
    this.heldById.delete(id);
    this.held.delete(labels);
    this.orphans.add(id);
    return this.serial(() => this.flushOrphans());
  }

  /**
   * After a restart: claims every number the node used before again (one transaction per 128, one
   * read-back for all), and validates each as allocate() does. Returns old number -> number to use.
   */
  reclaimAll(used: readonly { id: number; labels: readonly string[] }[]): Promise<Map<number, number>> {
    return this.serial(async () => {
      const out = new Map<number, number>();
      let last = 0;
      for (let i = 0; i < used.length; i += 128) {
        const r = await this.p.ctx.kv.txn({
          compare: [],
          ops: used.slice(i, i + 128).map((u) => this.claimOp(u.id, labelsText(u.labels))),
        });
        last = r.revision;
      }
      if (used.length > 0) await this.settle(last);
      for (const u of used) {
        const labels = labelsText(u.labels);
        if (this.claims.owner(u.id)?.labels === labels && this.claims.numberOf(labels) === u.id) {
          this.hold(labels, u.id);
          out.set(u.id, u.id);
        } else {
          if (this.heldById.get(u.id) !== labels) await this.p.ctx.kv.delete(this.keyOf(u.id));
          out.set(u.id, await this.take(labels, undefined));
        }
      }
      return out;
    });
  }

  /**
   * Puts every held claim again, on `lease` from now on when given: after the node's lease was lost
   * and granted anew (the claims went with the old one), or etcd lost data.
   */
  reassert(lease?: StoreLease): Promise<void> {
    return this.serial(async () => {
      if (lease) this.lease = lease;
      const all = [...this.heldById];
      this.held.clear();
      this.heldById.clear();
      for (const [id, labels] of all) await this.take(labels, id);
    });
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.chain.then(f, f);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private keyOf(id: number): string {
    return identitiesPrefix(this.p.ctx.node) + String(id);
  }

  private claimOp(id: number, labels: string): TxnOp {
    const rec: IdentityClaimV1 = { v: 1, labels: labels === "" ? [] : labels.split(",") };
    return { type: "put", key: this.keyOf(id), value: JSON.stringify(rec), lease: this.lease.id };
  }

  private hold(labels: string, id: number): void {
    this.held.set(labels, id);
    this.heldById.set(id, labels);
    this.orphans.delete(id);
  }

  /** Deletes the claims of released numbers that etcd could not be told about yet. */
  retryReleases(): Promise<void> {
    return this.orphans.size === 0 ? Promise.resolve() : this.serial(() => this.flushOrphans());
  }

  private async flushOrphans(): Promise<void> {
    for (const id of [...this.orphans]) {
      if (this.heldById.has(id)) {
        this.orphans.delete(id);
        continue;
      }
      await this.p.ctx.kv.delete(this.keyOf(id));
      this.orphans.delete(id);
    }
  }

  /** Claims `want` (or the cluster's number for `labels`, or a free one) until a claim holds. */
  private async take(labels: string, want: number | undefined): Promise<number> {
    const have = this.held.get(labels);
    if (have !== undefined) return have;
    await this.flushOrphans();
    const attempts = this.p.attempts ?? 16;
    for (let i = 0; i < attempts; i++) {
      const cand = (i === 0 ? want : undefined) ?? this.claims.numberOf(labels) ?? this.free();
      const r = await this.p.ctx.kv.txn({ compare: [], ops: [this.claimOp(cand, labels)] });
      await this.settle(r.revision);
      // The cache now holds every claim made before ours: the owner and the labels' number are final.
      const owner = this.claims.owner(cand);
      const mine = owner?.labels === labels;
      const number = mine ? this.claims.numberOf(labels) : undefined;
      if (mine && number === cand) {
        this.hold(labels, cand);
        return cand;
      }
      // Lost the number to other labels, or an earlier number exists for these labels: withdraw.
      this.log.info(
        { id: cand, owner: owner?.node, moveTo: number },
        "cluster identity claim withdrawn (another claim came first)",
      );
      await this.p.ctx.kv.delete(this.keyOf(cand));
    }
    throw new MembraneError(
      "CLUSTER_UNAVAILABLE",
      `Cannot allocate a cluster identity for labels ${JSON.stringify(labels)}: ${attempts} claims in a row were taken by other nodes first`,
      { hint: "retried on the next change; check `membrane get identities` on the nodes" },
    );
  }

  private free(): number {
    const id = this.claims.free(this.min, this.max);
    if (id === undefined) {
      throw new MembraneError(
        "IDENTITY_EXHAUSTED",
        `Cannot allocate a cluster identity: every number of ${this.min}..${this.max} is claimed by some node`,
        { hint: "Fewer distinct label sets, or remove identity-irrelevant labels from workloads." },
      );
    }
    return id;
  }

  /** Resolves once the cache holds every change up to `rev` (own watch event, else a fresh list). */
  private async settle(rev: number): Promise<void> {
    if (this.rev >= rev) return;
    if (!this.unwatch) return this.relist(); // never listed (etcd was down at start): read it now
    const seen = await new Promise<boolean>((resolve) => {
      const w = {
        rev,
        done: () => {
          clearTimeout(t);
          this.waiters.delete(w);
          resolve(true);
        },
      };
      const t = setTimeout(() => {
        this.waiters.delete(w);
        resolve(false);
      }, this.p.settleMs ?? 2000);
      this.waiters.add(w);
    });
    if (!seen || this.rev < rev) await this.relist();
  }

  private advance(rev: number): void {
    if (rev > this.rev) this.rev = rev;
    for (const w of [...this.waiters]) if (w.rev <= this.rev) w.done();
  }

  private onEvent(ev: WatchEvent): void {
    if (ev.type === "delete") this.claims.delete(ev.key);
    else {
      const c = parseClaim(ev.key, ev.value, ev.revision);
      if (c) this.claims.put(c);
      else this.claims.delete(ev.key);
    }
    this.advance(ev.revision);
  }

  /** Reads every claim again and watches from there (start, a watch error, a watch too slow to show a put). */
  private relist(): Promise<void> {
    this.relisting ??= (async () => {
      try {
        await this.unwatch?.();
        this.unwatch = undefined;
        const { kvs, revision } = await this.p.ctx.kv.list(CLUSTER_KEYS.identities);
        this.claims.clear();
        for (const kv of kvs) {
          const c = parseClaim(kv.key, kv.value, kv.modRevision);
          if (c) this.claims.put(c);
        }
        this.rev = revision;
        if (this.stopped) return;
        const unwatch = await this.p.ctx.kv.watch(
          CLUSTER_KEYS.identities,
          revision + 1,
          (ev) => this.onEvent(ev),
          {
            onError: (err) => {
              this.log.warn({ err: err.message }, "cluster identities watch failed: listing again");
              void this.relistLater();
            },
          },
        );
        if (this.stopped) {
          await unwatch(); // stopped while the watch was being opened
          return;
        }
        this.unwatch = unwatch;
        this.advance(revision);
      } catch (e) {
        throw new MembraneError(
          "CLUSTER_UNAVAILABLE",
          `Cannot read the cluster identities: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      } finally {
        this.relisting = undefined;
      }
    })();
    return this.relisting;
  }

  private async relistLater(): Promise<void> {
    for (let delay = 500; !this.stopped; delay = Math.min(delay * 2, 10_000)) {
      try {
        await this.relist();
        return;
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, "cluster identities: list failed, retrying");
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  }
}
