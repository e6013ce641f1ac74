/**
 * Identities persistence: every identity number >= 256 the engine allocated
 * is kept in the store (`identities/<id>` -> label strings), so that a
 * restarted agent gives each label set back the number the kernel holds.
 * Read first on start (before the engine exists); written before each
 * enforce, in transactions of STORE_TXN_OPS (one durable write each, not one
 * per identity). Make-before-break: new numbers are durable before the
 * kernel uses them.
 *
 * Cluster mode (`cluster` given): endpoint label sets take their numbers from
 * the cluster (cluster-identities.ts); this store's record of the numbers used
 * is what a restarted agent claims again.
 */
import type { Logger } from "pino";
import type { ClusterIdentities } from "../../cluster/identities.js";
import { IdentityAllocator, type Identity } from "../../identity/allocator.js";
import { parsePrefix } from "../../labels/cidr.js";
import { LabelSet } from "../../labels/label.js";
import type { PolicyEngine } from "../../policy/engine.js";
import type { Store, TxnOp } from "../../store/store.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import { KEYS } from "../records.js";
import { ClusterIdentityBridge } from "./cluster-identities.js";

/** Operations per store transaction when many keys change at once (etcd's default limit is 128). */
export const STORE_TXN_OPS = 128;

export class IdentitiesController implements Controller {
  readonly name = "identities";
  readonly revisions = new Revisions();
  private readonly persisted = new Set<number>();
  private persistedRev = -1;
  private persistedFor: PolicyEngine | undefined;

  private readonly cluster: ClusterIdentityBridge | undefined;

  constructor(
    private readonly d: {
      readonly store: Store;
      readonly logger: Logger;
      /** Cluster mode: the cluster-wide allocator (absent: numbers are allocated here). */
      readonly cluster?: ClusterIdentities;
      readonly serial?: ControllerDeps["serial"];
      readonly enforce?: ControllerDeps["enforce"];
    },
  ) {
    const { cluster, serial, enforce } = d;
    if (cluster && serial && enforce)
      this.cluster = new ClusterIdentityBridge({
        cluster,
        serial,
        enforce,
        logger: d.logger,
        revisions: this.revisions,
      });
  }

  /** The engine's allocator, with the identities the store holds (claimed again in cluster mode). */
  async allocator(): Promise<IdentityAllocator> {
    const restored = await this.load();
    return this.cluster ? this.cluster.allocatorFor(restored) : new IdentityAllocator({ restore: restored });
  }

  /** Cluster mode: claims numbers for label sets still without one (call before engine.regenerate()). */
  async resolvePending(engine: PolicyEngine): Promise<void> {
    await this.cluster?.resolvePending(engine);
  }

  async stop(): Promise<void> {
    await this.cluster?.stop();
  }

  /** The identities the store holds, for the engine's allocator. */
  async load(): Promise<Identity[]> {
    const ids = (await this.d.store.list(KEYS.identities)).kvs.map((kv) => {
      const labels = LabelSet.parse(JSON.parse(kv.value) as string[]);
      const cidr = [...labels].find((l) => l.source === "cidr");
      const prefix = cidr ? parsePrefix(cidr.key) : undefined;
      const id = Number(kv.key.slice(KEYS.identities.length));
      const ident: Identity = prefix ? { id, labels, prefix } : { id, labels };
      return ident;
    });
    for (const i of ids) this.persisted.add(i.id);
    if (ids.length > 0) this.revisions.bump();
    return ids;
  }

  /** Stores new identities and deletes gone ones (call after engine.regenerate()). */
  async persist(engine: PolicyEngine): Promise<void> {
    this.cluster?.releaseUnused(engine);
    // 10,000 identities are not walked for every change: only when the set changed.
    const rev = engine.identityRevision;
    if (rev === this.persistedRev && engine === this.persistedFor) return;
    const live = new Map<number, Identity>();
    for (const i of engine.identities()) if (i.id >= 256) live.set(i.id, i);
    const ops: TxnOp[] = [];
    for (const [id, i] of live) {
      if (!this.persisted.has(id)) {
        const labels = [...i.labels].map((l) => `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`);
        ops.push({ type: "put", key: KEYS.identities + id, value: JSON.stringify(labels) });
      }
    }
    for (const id of this.persisted) {
      if (!live.has(id)) ops.push({ type: "delete", key: KEYS.identities + id });
    }
    const done = (): void => {
      this.persistedRev = rev;
      this.persistedFor = engine;
    };
    if (ops.length === 0) return done();
    this.revisions.bump();
    for (let i = 0; i < ops.length; i += STORE_TXN_OPS) {
      const part = ops.slice(i, i + STORE_TXN_OPS);
      await this.d.store.txn({ compare: [], ops: part });
      for (const op of part) {
        const id = Number(op.key.slice(KEYS.identities.length));
        if (op.type === "put") this.persisted.add(id);
        else this.persisted.delete(id);
      }
    }
    done();
  }
}
