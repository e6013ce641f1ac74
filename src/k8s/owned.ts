/**
 * What the watcher gave the agent, remembered in the agent's store, so that
 * a later run (after a restart) knows which node addresses, services and
 * remote endpoints came from Kubernetes and removes those deleted while it
 * was down, and never touches what a user or the cluster store added:
 *
 *   k8s-owned/<node>/<kind>/<id> -> value      (kind: node-addresses | services | remote-endpoints)
 *
 *   give:   owned.set(id, value)  --then-->  the agent's upsert
 *   forget: the agent's delete    --then-->  owned.delete(id)
 *
 * In that order an entry may name something the agent never took (a crash
 * in between, a refused upsert): forgetting it later changes nothing. The
 * other order could leave in the agent something no run knows it made.
 * Without a store (tests of one sync alone) the record is in memory only.
 */
import type { Store, TxnOp } from "../store/store.js";
import { STORE_TXN_OPS } from "../agent/controllers/identities.js";

export const OWNED_KEY = "k8s-owned/";

export type OwnedKind = "node-addresses" | "services" | "remote-endpoints";

export class Owned {
  private readonly held = new Map<string, string>();
  private loaded: Promise<void> | undefined;

  constructor(
    private readonly store: Store | undefined,
    nodeName: string,
    kind: OwnedKind,
  ) {
    this.prefix = `${OWNED_KEY}${nodeName}/${kind}/`;
  }

  private readonly prefix: string;

  /** Reads what earlier runs recorded (once; later calls wait for the same read). */
  load(): Promise<void> {
    this.loaded ??= (async () => {
      if (!this.store) return;
      for (const kv of (await this.store.list(this.prefix)).kvs)
        this.held.set(kv.key.slice(this.prefix.length), kv.value);
    })();
    return this.loaded;
  }

  get(id: string): string | undefined {
    return this.held.get(id);
  }

  has(id: string): boolean {
    return this.held.has(id);
  }

  entries(): [string, string][] {
    return [...this.held];
  }

  /** Records ids as given (before the agent's upsert); unchanged ones are not written again. */
  async set(entries: readonly (readonly [string, string])[]): Promise<void> {
    const ops: TxnOp[] = entries
      .filter(([id, v]) => this.held.get(id) !== v)
      .map(([id, v]) => ({ type: "put", key: this.prefix + id, value: v }));
    await this.write(ops);
    for (const [id, v] of entries) this.held.set(id, v);
  }

  /** Forgets ids (after the agent's delete). */
  async delete(ids: readonly string[]): Promise<void> {
    const ops: TxnOp[] = [...new Set(ids)]
      .filter((id) => this.held.has(id))
      .map((id) => ({ type: "delete", key: this.prefix + id }));
    await this.write(ops);
    for (const id of ids) this.held.delete(id);
  }

  private async write(ops: readonly TxnOp[]): Promise<void> {
    if (!this.store) return;
    for (let i = 0; i < ops.length; i += STORE_TXN_OPS)
      await this.store.txn({ compare: [], ops: ops.slice(i, i + STORE_TXN_OPS) });
  }
}
