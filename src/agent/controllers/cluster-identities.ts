/**
 * Cluster mode's side of the identities controller: endpoint label sets get
 * their numbers from the cluster (src/cluster/identities.ts), CIDR and FQDN
 * identities (>= 2^24) stay local. The policy core stays pure: its allocator
 * only reads numbers already claimed (IdentityAllocator `clusterNumber`).
 *
 *   start: node-local record of used numbers --reclaimAll--> allocator restored with them
 *   enforce: label sets handed `init` --ClusterIdentities.allocate--> endpoints upserted again
 *   persist: numbers the engine no longer holds --release--> claims withdrawn
 *
 * Fail closed: an endpoint whose number cannot be allocated (etcd down) keeps
 * the reserved `init` identity, which the policy core puts in default deny both
 * ways (only the node itself may reach it, allowLocalhost, and policies written
 * for reserved:init apply, as in Cilium); the controller's status says so, and a retry (backoff up to 10 s)
 * opens it once etcd answers. Known numbers keep working meanwhile.
 */
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";
import type { ClusterIdentities } from "../../cluster/identities.js";
import { IdentityAllocator, type Identity } from "../../identity/allocator.js";
import { CLUSTER_ID_MIN, ID, LOCAL_ID_MIN } from "../../identity/reserved.js";
import type { LabelSet } from "../../labels/label.js";
import type { PolicyEngine } from "../../policy/engine.js";
import type { ControllerDeps, Revisions } from "../controller.js";

/** A label set as the claims write it: `source:key=value` strings. */
export function labelStrings(labels: LabelSet): string[] {
  return [...labels].map((l) => `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`);
}

const isCluster = (id: number): boolean => id >= CLUSTER_ID_MIN && id < LOCAL_ID_MIN;
const RETRY_MAX_MS = 10_000;

export class ClusterIdentityBridge {
  private allocator: IdentityAllocator | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryDue = false;
  private backoffMs = 500;
  private sweptRev = -1;
  private sweptFor: PolicyEngine | undefined;
  /** Endpoints closed for want of a number at the last attempt. */
  closed = 0;

  constructor(
    private readonly d: Pick<ControllerDeps, "serial" | "enforce"> & {
      readonly cluster: ClusterIdentities;
      readonly logger: Logger;
      readonly revisions: Revisions;
    },
  ) {}

  /** The engine's allocator: the numbers used before the restart claimed again, then the cluster's. */
  async allocatorFor(restored: readonly Identity[]): Promise<IdentityAllocator> {
    const log = this.d.logger;
    await this.d.cluster
      .start()
      .catch((e: unknown) => log.warn({ err: String(e) }, "cluster identities: etcd not readable yet"));
    const mine = restored.filter((i) => isCluster(i.id));
    let moved = new Map<number, number>();
    try {
      moved = await this.d.cluster.reclaimAll(
        mine.map((i) => ({ id: i.id, labels: labelStrings(i.labels) })),
      );
    } catch (e) {
      // Known numbers keep working (they were the cluster's when used); claimed again on the next retry.
      log.warn(
        { err: String(e), numbers: mine.length },
        "cluster identities: could not claim the numbers in use again",
      );
      this.scheduleRetry();
    }
    const restore = restored.map((i) => {
      const to = moved.get(i.id);
      if (to === undefined || to === i.id) return i;
      log.warn(
        { from: i.id, to },
        "cluster identity renumbered: another node took the number while this one was away",
      );
      return { ...i, id: to };
    });
    this.allocator = new IdentityAllocator({
      restore,
      clusterNumber: (labels) => this.d.cluster.heldNumber(labelStrings(labels)),
    });
    return this.allocator;
  }

  /**
   * Before the engine is regenerated (inside enforce): claims numbers for the label sets that got
   * `init`, then upserts their endpoints again so that they take them (make-before-break in the engine).
   */
  async resolvePending(engine: PolicyEngine): Promise<void> {
    const a = this.allocator;
    if (!a) return;
    const retry = this.retryDue;
    this.retryDue = false;
    if (retry) {
      await this.d.cluster.retryReleases().catch(() => this.scheduleRetry());
      await this.reclaimRestored(engine);
      this.reupsertClosed(engine); // lists their label sets again
    }
    const sets = a.takePending();
    if (sets.length === 0 || (this.timer && !retry)) return; // in backoff: the retry takes them
    let err: unknown;
    let got = 0;
    for (const l of sets) {
      try {
        await this.d.cluster.allocate(labelStrings(l));
        got++;
      } catch (e) {
        err = e;
        break; // etcd is down or refuses: the others would fail the same way
      }
    }
    if (got > 0) {
      this.reupsertClosed(engine);
      this.d.revisions.bump();
    }
    this.closed = closedCount(engine);
    if (err === undefined) {
      this.backoffMs = 500;
      return;
    }
    a.takePending(); // the retry lists them again
    this.d.revisions.fail(
      new MembraneError(
        "CLUSTER_UNAVAILABLE",
        `Cannot allocate cluster identities: ${this.closed} endpoint(s) stay closed (identity reserved:init: default deny both ways, only the node may reach them) until etcd answers: ${(err as Error).message}`,
      ),
    );
    this.scheduleRetry();
  }

  /** After persist: withdraws the claims of numbers the engine no longer holds (not awaited: etcd may be down). */
  releaseUnused(engine: PolicyEngine): void {
    // 10,000 identities are not walked for every change: only when the set changed.
    if (engine.identityRevision === this.sweptRev && engine === this.sweptFor) return;
    this.sweptRev = engine.identityRevision;
    this.sweptFor = engine;
    const held = this.d.cluster.heldNumbers();
    if (held.size === 0) return;
    const live = new Set<number>();
    for (const i of engine.identities()) if (isCluster(i.id)) live.add(i.id);
    for (const id of held)
      if (!live.has(id))
        this.d.cluster.release(id).catch((e: unknown) => {
          this.d.logger.warn({ id, err: String(e) }, "cluster identity claim not withdrawn yet");
          this.scheduleRetry();
        });
  }

  /** Ends retries and the watch of the claims (the claims stay: the lease's owner decides). */
  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.allocator = undefined;
    await this.d.cluster.stop();
  }

  private reupsertClosed(engine: PolicyEngine): void {
    for (const ep of engine.listEndpoints())
      if (ep.identity.id === ID.init && ep.spec.kind !== "health") engine.upsertEndpoint(ep.spec);
    for (const r of engine.remoteEndpoints())
      if (r.identity.id === ID.init) engine.upsertRemoteEndpoint(r.spec);
  }

  /** Numbers in use that were not claimed again at start (etcd was down then). */
  private async reclaimRestored(engine: PolicyEngine): Promise<void> {
    const held = this.d.cluster.heldNumbers();
    const used = [...engine.identities()].filter((i) => isCluster(i.id) && !held.has(i.id));
    if (used.length === 0) return;
    let moved: Map<number, number>;
    try {
      moved = await this.d.cluster.reclaimAll(
        used.map((i) => ({ id: i.id, labels: labelStrings(i.labels) })),
      );
    } catch (e) {
      this.d.logger.warn(
        { err: String(e), numbers: used.length },
        "cluster identities: numbers in use not claimed yet",
      );
      this.scheduleRetry();
      return;
    }
    this.backoffMs = 500;
    for (const [from, to] of moved)
      if (from !== to)
        this.d.logger.error(
          { from, to },
          "cluster identity taken by another node while etcd was unreachable: restart the agent to renumber",
        );
  }

  private scheduleRetry(): void {
    if (this.timer) return;
    const ms = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, RETRY_MAX_MS);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retryDue = true;
      this.d
        .serial(() => this.d.enforce(), undefined, "cluster identities retry")
        .catch((e: unknown) => this.d.logger.warn({ err: String(e) }, "cluster identities retry failed"));
    }, ms);
    this.timer.unref();
  }
}

function closedCount(engine: PolicyEngine): number {
  let n = 0;
  for (const ep of engine.listEndpoints()) if (ep.identity.id === ID.init) n++;
  return n;
}
