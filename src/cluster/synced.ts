/**
 * A controller whose records can change under it: in cluster mode another
 * node writes them (resources.ts watches etcd and hands each change
 * here). The controller takes the record into its view and the engine as if
 * it had applied it, without writing the store (it is already there), and
 * says whether anything changed; the caller enforces once per batch.
 *
 *   watch event (key, value | undefined) --syncRecord--> view + engine   (inside serial())
 */
export interface SyncedResource {
  /** The store prefix of its records ("policies/", "namespaces/", "services/"). */
  readonly prefix: string;
  /**
   * Takes the stored record `key` (full store key; `value` undefined: deleted) into the view and
   * the engine. False when the view already held it (e.g. this node's own write coming back).
   * A record that does not decode is logged and skipped (false). Call inside serial().
   */
  syncRecord(key: string, value: string | undefined): boolean;
  /** The full store keys the view holds (a re-list deletes the ones no longer stored). */
  syncedKeys(): string[];
}
