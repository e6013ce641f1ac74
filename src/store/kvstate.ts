/**
 * The embedded store's in-memory state: keys, the revision, a bounded history
 * of recent changes and the watchers fed from it. It holds only committed
 * (durable) changes; embedded.ts stages a batch, makes it durable, then
 * applies it here.
 */
import { MembraneError } from "../errors.js";
import type { KeyValue, TxnCompare, TxnOp, WatchEvent } from "./store.js";

/** One revision's worth of changes, as written to the log. */
export interface Change {
  readonly revision: number;
  readonly ops: readonly TxnOp[];
}

export interface HistoryLimits {
  /** Most events kept for watches that start in the past. */
  readonly events: number;
  /** Most value bytes kept in that history. */
  readonly bytes: number;
}

interface Watcher {
  readonly prefix: string;
  readonly cb: (ev: WatchEvent) => void;
}

export class KvState {
  readonly kvs = new Map<string, KeyValue>();
  revision = 0;
  /** Changes with revision <= this are no longer in `history`. */
  compactedRevision = 0;
  private readonly history: WatchEvent[] = [];
  private historyBytes = 0;
  private readonly watchers = new Set<Watcher>();

  constructor(
    private readonly limits: HistoryLimits,
    private readonly onWatcherError: (err: unknown) => void,
  ) {}

  /** Loads a snapshot; history starts after it. */
  load(revision: number, kvs: readonly KeyValue[]): void {
    this.kvs.clear();
    for (const kv of kvs) this.kvs.set(kv.key, kv);
    this.revision = revision;
    this.compactedRevision = revision;
  }

  /** Applies a committed change: updates keys, records history, notifies watchers. */
  apply(change: Change): void {
    const events: WatchEvent[] = [];
    for (const op of change.ops) {
      if (op.type === "put") {
        const prev = this.kvs.get(op.key);
        this.kvs.set(op.key, {
          key: op.key,
          value: op.value,
          createRevision: prev ? prev.createRevision : change.revision,
          modRevision: change.revision,
        });
        events.push({ type: "put", key: op.key, value: op.value, revision: change.revision });
      } else if (this.kvs.delete(op.key)) {
        events.push({ type: "delete", key: op.key, value: "", revision: change.revision });
      }
    }
    this.revision = change.revision;
    for (const ev of events) this.record(ev);
    for (const ev of events) this.notify(ev);
  }

  private record(ev: WatchEvent): void {
    this.history.push(ev);
    this.historyBytes += ev.value.length + ev.key.length;
    // Trim whole revisions only: a watch must see all of a txn or none of it.
    while (this.history.length > this.limits.events || this.historyBytes > this.limits.bytes) {
      const head = this.history[0];
      if (!head || head.revision === this.revision) break;
      this.compactedRevision = head.revision;
      while (this.history[0] && this.history[0].revision <= this.compactedRevision) {
        const old = this.history.shift();
        if (old) this.historyBytes -= old.value.length + old.key.length;
      }
    }
  }

  private notify(ev: WatchEvent): void {
    for (const w of this.watchers) {
      if (!ev.key.startsWith(w.prefix)) continue;
      try {
        w.cb(ev);
      } catch (e) {
        this.onWatcherError(e);
      }
    }
  }

  /** Replays history from `fromRevision` (0: now) to `cb`, then streams; returns the unsubscribe. */
  watch(prefix: string, fromRevision: number, cb: (ev: WatchEvent) => void): () => void {
    if (fromRevision !== 0 && fromRevision <= this.compactedRevision) {
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot watch ${JSON.stringify(prefix)} from revision ${fromRevision}: changes up to revision ${this.compactedRevision} were compacted`,
        { hint: "list the prefix again and watch from the list's revision + 1" },
      );
    }
    const w: Watcher = { prefix, cb };
    if (fromRevision !== 0) {
      for (const ev of this.history) {
        if (ev.revision < fromRevision || !ev.key.startsWith(prefix)) continue;
        try {
          cb(ev);
        } catch (e) {
          this.onWatcherError(e);
        }
      }
    }
    this.watchers.add(w);
    return () => {
      this.watchers.delete(w);
    };
  }

  clearWatchers(): void {
    this.watchers.clear();
  }
}

/**
 * A batch of changes being prepared on top of the committed state: compares
 * and later ops in the same batch see earlier ops' effects.
 */
export class Staging {
  private readonly overlay = new Map<string, KeyValue | null>();
  revision: number;

  constructor(private readonly base: KvState) {
    this.revision = base.revision;
  }

  get(key: string): KeyValue | undefined {
    const o = this.overlay.get(key);
    if (o === null) return undefined;
    return o ?? this.base.kvs.get(key);
  }

  holds(compare: readonly TxnCompare[]): boolean {
    return compare.every((c) =>
      c.prefix === undefined
        ? (this.get(c.key)?.modRevision ?? 0) === c.modRevision
        : this.newestUnder(c.prefix) <= c.unchangedSince,
    );
  }

  /**
   * The highest modRevision of a key under `prefix` (0: none), as staged. A scan of the keys: the
   * embedded store is one host's, and a prefix compare is rare (a Service's new address).
   */
  private newestUnder(prefix: string): number {
    let newest = 0;
    for (const [k, kv] of this.base.kvs)
      if (k.startsWith(prefix) && !this.overlay.has(k)) newest = Math.max(newest, kv.modRevision);
    for (const [k, kv] of this.overlay) if (kv !== null && k.startsWith(prefix)) newest = Math.max(newest, kv.modRevision); // prettier-ignore
    return newest;
  }

  /** Stages ops as one revision; returns the change, or undefined if it changes nothing. */
  stage(ops: readonly TxnOp[]): Change | undefined {
    const effective = ops.filter((op) => op.type === "put" || this.get(op.key) !== undefined);
    if (effective.length === 0) return undefined;
    const revision = this.revision + 1;
    for (const op of effective) {
      if (op.type === "put") {
        const prev = this.get(op.key);
        this.overlay.set(op.key, {
          key: op.key,
          value: op.value,
          createRevision: prev ? prev.createRevision : revision,
          modRevision: revision,
        });
      } else {
        this.overlay.set(op.key, null);
      }
    }
    this.revision = revision;
    return { revision, ops: effective };
  }
}
