/**
 * Cluster-wide resources on one node: every agent watches the policies,
 * namespaces and services in etcd and enforces what any node (or `membrane
 * apply --cluster-store`) wrote; then it says so in `cluster/status/<node>`.
 *
 *   etcd cluster/{policies,namespaces,services}/ ──list, watch(rev+1)──▶ batch of changes
 *        ──serial: controller.syncRecord (view + engine) ──▶ enforce ──▶ realized = newest revision
 *        ──▶ cluster/status/<node> {realizedRevision, lastError} (on the node's lease)
 *
 * A watch that fails (compaction, a lost stream) lists again: what the list
 * lacks is deleted from the view, then the watch resumes from the list's
 * revision + 1. An enforce that fails keeps the realized revision where it
 * was, shows the error in the status and is retried. This node's own writes
 * come back through the watch unchanged (the view holds them already), which
 * is what advances the realized revision past them.
 */
import type { SyncedResource } from "./synced.js";
import type { Store, Unsubscribe } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { CLUSTER, statusKey, type NodeStatusV1 } from "./keys.js";
import { ClusterResourceStore } from "./resource-store.js";

export interface ClusterResourcesDeps {
  readonly ctx: ClusterContext;
  readonly resources: readonly SyncedResource[];
  /** The agent's work queue (one change at a time). */
  readonly serial: <T>(f: () => Promise<T>, signal?: AbortSignal, what?: string) => Promise<T>;
  readonly enforce: () => Promise<unknown>;
  /** True while the kernel may lag the engine. */
  readonly kernelBehind: () => boolean;
  /** The etcd revision of this node's newest resource write (resource-store.ts). */
  readonly lastWrite?: () => number;
  /** Wait before a failed list or enforce is tried again (ms). Default 2000. */
  readonly retryMs?: number;
}

interface Change {
  readonly res: SyncedResource;
  readonly key: string;
  readonly value: string | undefined;
  readonly revision: number;
}

export class ClusterResources {
  private realizedRev = 0;
  /** The newest revision taken into the engine (realized once an enforce succeeds). */
  private takenRev = 0;
  private error: string | undefined;
  private pending: Change[] = [];
  private draining = false;
  private unsubs: Unsubscribe[] = [];
  /** Bumped by each list: events of older watches are dropped. */
  private generation = 0;
  /** One pending retry per kind: a list again, an enforce again. */
  private readonly timers = new Map<"relist" | "enforce", NodeJS.Timeout>();
  private stopped = false;
  private written = "";
  private statusChain: Promise<void> = Promise.resolve();

  constructor(private readonly d: ClusterResourcesDeps) {}

  /** The etcd revision of the newest cluster resource change this node enforced. */
  get realized(): number {
    return this.realizedRev;
  }

  /**
   * What `apply --wait` waits for after this node's apply: the revision of its write, or when
   * nothing was written (all unchanged) what this node has realized.
   */
  revisionToWait(): number {
    return Math.max(this.d.lastWrite?.() ?? 0, this.realizedRev);
  }

  /** The cluster store and this node's name (status routes). */
  get context(): ClusterContext {
    return this.d.ctx;
  }

  get lastError(): string | undefined {
    return this.error;
  }

  /** Lists, enforces and watches; resolves once the first list is enforced (or failed: then retried). */
  async start(): Promise<void> {
    await this.relist();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers.values()) clearTimeout(t);
    await this.unwatch();
    await this.statusChain;
  }

  private async unwatch(): Promise<void> {
    const u = this.unsubs;
    this.unsubs = [];
    await Promise.all(u.map((f) => f().catch(() => undefined)));
  }

  private later(kind: "relist" | "enforce", f: () => void): void {
    if (this.stopped || this.timers.has(kind)) return;
    const timer = setTimeout(() => {
      this.timers.delete(kind);
      f();
    }, this.d.retryMs ?? 2000);
    timer.unref();
    this.timers.set(kind, timer);
  }

  /** Lists every prefix, makes the view match, enforces, then watches from each list's revision + 1. */
  private async relist(): Promise<void> {
    if (this.stopped) return;
    const gen = ++this.generation;
    await this.unwatch();
    try {
      const lists = await this.d.serial(
        async () => {
          const out: { res: SyncedResource; revision: number }[] = [];
          let changed = false;
          for (const res of this.d.resources) {
            const l = await this.d.ctx.kv.list(CLUSTER + res.prefix);
            const seen = new Set<string>();
            for (const kv of l.kvs) {
              const key = kv.key.slice(CLUSTER.length);
              seen.add(key);
              changed = res.syncRecord(key, kv.value) || changed;
            }
            for (const key of res.syncedKeys())
              if (!seen.has(key)) changed = res.syncRecord(key, undefined) || changed;
            out.push({ res, revision: l.revision });
          }
          // Every change up to the first list's revision is in the view (each later list is newer).
          this.take(Math.min(...out.map((o) => o.revision)));
          await this.enforce(changed);
          return out;
        },
        undefined,
        "list the cluster's resources",
      );
      for (const { res, revision } of lists) {
        const unsub = await this.d.ctx.kv.watch(
          CLUSTER + res.prefix,
          revision + 1,
          (ev) => {
            if (gen !== this.generation) return;
            const key = ev.key.slice(CLUSTER.length);
            this.pending.push({
              res,
              key,
              value: ev.type === "put" ? ev.value : undefined,
              revision: ev.revision,
            });
            this.kick();
          },
          { onError: (e) => this.watchFailed(gen, e) },
        );
        if (gen !== this.generation) await unsub();
        else this.unsubs.push(unsub);
      }
    } catch (e) {
      if (gen !== this.generation) return;
      this.fail(e, "cannot list the cluster's resources; listing again");
      this.later("relist", () => void this.relist());
    }
  }

  private watchFailed(gen: number, e: Error): void {
    if (gen !== this.generation || this.stopped) return;
    this.d.ctx.logger.warn({ err: e.message }, "watch of the cluster's resources failed; listing again");
    this.later("relist", () => void this.relist());
  }

  /** Drains queued changes on the work queue, a batch at a time (bursts coalesce). */
  private kick(): void {
    if (this.draining || this.stopped) return;
    this.draining = true;
    void this.d
      .serial(() => this.drain(), undefined, "enforce the cluster's resources")
      .catch((e: unknown) => this.fail(e, "cannot enforce the cluster's resources"))
      .finally(() => {
        this.draining = false;
        if (this.pending.length > 0) this.kick();
      });
  }

  private async drain(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    let changed = false;
    let newest = 0;
    for (const c of batch) {
      changed = c.res.syncRecord(c.key, c.value) || changed;
      newest = Math.max(newest, c.revision);
    }
    this.take(newest);
    await this.enforce(changed);
  }

  private take(rev: number): void {
    if (rev > this.takenRev) this.takenRev = rev;
  }

  /** Enforces when the view changed or the kernel lags; realized advances only after the kernel took it. */
  private async enforce(changed: boolean): Promise<void> {
    if (changed || this.d.kernelBehind()) {
      try {
        await this.d.enforce();
      } catch (e) {
        this.fail(e, "cannot enforce the cluster's resources; trying again");
        this.later("enforce", () => this.kick());
        return;
      }
    }
    this.realizedRev = Math.max(this.realizedRev, this.takenRev);
    this.error = undefined;
    this.report();
  }

  private fail(e: unknown, msg: string): void {
    this.error = e instanceof Error ? e.message : String(e);
    this.d.ctx.logger.error({ err: this.error }, msg);
    this.report();
  }

  /** Writes `cluster/status/<node>` when it changed (one write at a time, on the lease). */
  private report(): void {
    const key = statusKey(this.d.ctx.node);
    const mark = `${this.realizedRev}\0${this.error ?? ""}`;
    if (mark === this.written || this.stopped) return;
    this.written = mark;
    const status: NodeStatusV1 = {
      v: 1,
      realizedRevision: this.realizedRev,
      at: new Date().toISOString(),
      ...(this.error !== undefined ? { lastError: this.error.slice(0, 1024) } : {}),
    };
    const value = JSON.stringify(status);
    this.statusChain = this.statusChain
      .then(() =>
        this.d.ctx.kv.txn({ compare: [], ops: [{ type: "put", key, value, lease: this.d.ctx.lease.id }] }),
      )
      .then(
        () => undefined,
        (e: unknown) => {
          this.written = ""; // written again with the next change
          this.d.ctx.logger.warn({ err: String(e) }, "cannot write this node's status to the cluster store");
        },
      );
  }
}

/** The agent's wiring in cluster mode (agent.ts), in one place. */
export const clusterResources = {
  /** The controllers' deps with their store routed: resources to etcd, the rest node-local. */
  deps<D extends { readonly store: Store }>(
    deps: D,
    ctx: ClusterContext,
  ): D & { store: ClusterResourceStore } {
    return { ...deps, store: new ClusterResourceStore(deps.store, ctx.kv) };
  },
  watch(
    deps: Pick<ClusterResourcesDeps, "serial" | "enforce" | "kernelBehind"> & { readonly store: Store },
    ctx: ClusterContext,
    resources: readonly SyncedResource[],
  ): ClusterResources {
    const store = deps.store instanceof ClusterResourceStore ? deps.store : undefined;
    return new ClusterResources({
      ctx,
      resources,
      serial: deps.serial,
      enforce: deps.enforce,
      kernelBehind: deps.kernelBehind,
      ...(store ? { lastWrite: () => store.lastWrite } : {}),
    });
  },
  /** An apply's report with the etcd revision `apply --wait` waits for (cluster mode). */
  async revision<R extends object>(
    c: ClusterResources | undefined,
    report: Promise<R>,
  ): Promise<R & { clusterRevision?: number }> {
    const r = await report;
    return c ? { ...r, clusterRevision: c.revisionToWait() } : r;
  },
};
