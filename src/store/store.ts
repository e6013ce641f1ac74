/**
 * The state store: one interface, two backends (DESIGN.md, `store/`).
 *
 *   agent ──put/txn──▶ Store ──watch(prefix, fromRevision)──▶ agent subsystems
 *                        │
 *            embedded (durable log file, one host) | etcd (many hosts)
 *
 * A flat key-value space with etcd's revision model: every change bumps one
 * store-wide revision; each key records the revision that created it and the
 * one that last modified it. `txn` compares keys' modRevisions and applies
 * its operations only when all compares hold, which makes allocation (IPAM,
 * identities) race-free across nodes. `watch` replays every change since a
 * revision and then streams new ones, in revision order, so a caller can
 * `list()` and then `watch(prefix, rev + 1)` without a gap.
 *
 * Values are strings (callers store JSON). Both backends pass the same
 * contract suite (test/store/contract.ts, STYLE.md §9).
 */

export interface KeyValue {
  readonly key: string;
  readonly value: string;
  /** Revision of the put that created the key (since its last delete). */
  readonly createRevision: number;
  /** Revision of the last put to the key. */
  readonly modRevision: number;
}

export interface WatchEvent {
  readonly type: "put" | "delete";
  readonly key: string;
  /** The new value for a put; "" for a delete. */
  readonly value: string;
  /** The revision of the change (changes in one txn share a revision). */
  readonly revision: number;
}

/** A compare of a transaction: on one key, or on every key under a prefix. */
export type TxnCompare = KeyCompare | PrefixCompare;

/** Holds when `key`'s modRevision equals `modRevision`; 0 means "the key does not exist". */
export interface KeyCompare {
  readonly key: string;
  readonly modRevision: number;
  readonly prefix?: undefined;
  readonly unchangedSince?: undefined;
}

/**
 * Holds when no key under `prefix` was written after revision `unchangedSince` (every key there
 * has a modRevision <= it; a prefix without keys holds). With the revision a list() of the prefix
 * was read at, it says "nobody added or changed a key there since I read it": what keeps a
 * reservation unique against writers whose keys the caller may only read (etcd checks a compare
 * against read permission only). A delete since does not fail it.
 */
export interface PrefixCompare {
  readonly prefix: string;
  readonly unchangedSince: number;
  readonly key?: undefined;
  readonly modRevision?: undefined;
}

/** The key, or the prefix, a compare looks at. */
export const compareKey = (c: TxnCompare): string => (c.prefix !== undefined ? c.prefix : c.key);

export type TxnOp =
  | {
      readonly type: "put";
      readonly key: string;
      readonly value: string;
      /**
       * etcd only (cluster mode): attach the key to this lease (StoreLease.id), so that it is
       * deleted when the lease expires. The embedded store refuses it.
       */
      readonly lease?: string;
    }
  | { readonly type: "delete"; readonly key: string };

export interface TxnRequest {
  readonly compare: readonly TxnCompare[];
  readonly ops: readonly TxnOp[];
}

export interface TxnResult {
  /** True when every compare held and the ops were applied. */
  readonly succeeded: boolean;
  /** The store revision after the txn (unchanged when it failed or changed nothing). */
  readonly revision: number;
}

export interface WatchOptions {
  /**
   * Called when the watch can no longer deliver events in order (e.g. the
   * requested revision was compacted away). The watch is over after that;
   * the caller lists again and watches from the list's revision + 1.
   */
  readonly onError?: (err: Error) => void;
}

export type Unsubscribe = () => Promise<void>;

export interface Store {
  get(key: string): Promise<KeyValue | undefined>;
  /** All keys starting with `prefix`, sorted by key, with the revision they were read at. */
  list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }>;
  /** Resolves after the write is durable, with the revision it created. */
  put(key: string, value: string): Promise<number>;
  /** Resolves with the revision of the delete (the current revision if the key did not exist). */
  delete(key: string): Promise<number>;
  txn(req: TxnRequest): Promise<TxnResult>;
  /**
   * Delivers every change under `prefix` with revision >= `fromRevision`
   * (0: only changes after the call), in order, then streams new ones. Resolves
   * once the watch is established: no change after that point is missed.
   */
  watch(
    prefix: string,
    fromRevision: number,
    cb: (ev: WatchEvent) => void,
    opts?: WatchOptions,
  ): Promise<Unsubscribe>;
  /** The current store revision. */
  revision(): Promise<number>;
  close(): Promise<void>;
}
