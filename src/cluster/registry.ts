/**
 * The node registry (`cluster/nodes/<node>`, keys.ts): this node's record on
 * its lease, and the live set of every node, for routing (H5) and host
 * policies (H6).
 *
 *   publish() ──put nodes/<me> (lease)──▶ etcd ──list + watch nodes/ from rev+1──▶ nodes(), on(change)
 *                                               watch error ──▶ list again, watch again
 *
 * A node is alive while its key is present: when its lease expires etcd
 * deletes the key and the node leaves the set (a "delete" change). Records
 * that do not parse, or whose name differs from their key, are ignored
 * (logged), never trusted.
 */
import type { Logger } from "pino";
import { followPrefix } from "../store/follow-prefix.js";
import type { Unsubscribe } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { CLUSTER_KEYS, nodeKey, validateNodeName, type NodeRecordV1 } from "./keys.js";

export interface NodeChange {
  readonly type: "upsert" | "delete";
  readonly name: string;
  /** The record (for a delete: the last one seen). */
  readonly record: NodeRecordV1 | undefined;
}

/** Parses a record read from etcd; undefined when it is not a valid NodeRecordV1 for `name`. */
export function parseNodeRecord(name: string, value: string): NodeRecordV1 | undefined {
  try {
    const r = JSON.parse(value) as Partial<NodeRecordV1>;
    if (r.v !== 1 || r.name !== name) return undefined;
    if (typeof r.addresses !== "object" || r.addresses === null) return undefined;
    if (!Array.isArray(r.podCidrs) || typeof r.labels !== "object" || r.labels === null) return undefined;
    if (r.routing !== "native" && r.routing !== "vxlan") return undefined;
    return r as NodeRecordV1;
  } catch {
    return undefined;
  }
}

export class NodeRegistry {
  private readonly live = new Map<string, NodeRecordV1>();
  private readonly listeners = new Set<(c: NodeChange) => void>();
  private unwatch: Unsubscribe | undefined;
  private stopped = false;
  private relisting: Promise<void> | undefined;
  private readonly log: Logger;

  constructor(
    private readonly ctx: ClusterContext,
    private record: NodeRecordV1,
  ) {
    validateNodeName(record.name);
    this.log = ctx.logger.child({ part: "node-registry" });
  }

  /** This node's record as published. */
  self(): NodeRecordV1 {
    return this.record;
  }

  /** Puts this node's record on the (current) lease; again after a lease was re-granted. */
  async publish(record: NodeRecordV1 = this.record): Promise<void> {
    this.record = record;
    await this.ctx.kv.txn({
      compare: [],
      ops: [
        { type: "put", key: nodeKey(this.ctx.node), value: JSON.stringify(record), lease: this.ctx.lease.id },
      ],
    });
  }

  /** Lists every node and watches for changes until stop(). */
  async start(): Promise<void> {
    await this.relist();
  }

  private async relist(): Promise<void> {
    if (this.stopped) return;
    const old = this.unwatch;
    this.unwatch = undefined;
    await old?.().catch(() => undefined);
    this.unwatch = await followPrefix(this.ctx.kv, CLUSTER_KEYS.nodes, {
      put: (name, value) => this.apply(name, value),
      remove: (name) => this.remove(name),
      known: () => this.live.keys(),
      stopped: () => this.stopped,
      onError: (err) => this.onWatchError(err),
    });
  }

  private onWatchError(err: Error): void {
    if (this.stopped) return;
    this.log.warn({ err: err.message }, "node watch failed; listing the nodes again");
    if (this.relisting) return;
    const retry = async (): Promise<void> => {
      for (let delay = 200; !this.stopped; delay = Math.min(delay * 2, 5000)) {
        try {
          await this.relist();
          return;
        } catch (e) {
          this.log.warn({ err: (e as Error).message }, "cannot list the nodes; retrying");
          await new Promise((r) => setTimeout(r, delay).unref());
        }
      }
    };
    this.relisting = retry().finally(() => (this.relisting = undefined));
  }

  private apply(name: string, value: string): void {
    const rec = parseNodeRecord(name, value);
    if (!rec) {
      this.log.warn({ key: CLUSTER_KEYS.nodes + name }, "ignoring an invalid node record");
      return;
    }
    const before = this.live.get(name);
    if (before && JSON.stringify(before) === JSON.stringify(rec)) return;
    this.live.set(name, rec);
    this.emit({ type: "upsert", name, record: rec });
  }

  private remove(name: string): void {
    const before = this.live.get(name);
    if (!before) return;
    this.live.delete(name);
    this.log.info({ node: name }, "node left the cluster (its key is gone)");
    this.emit({ type: "delete", name, record: before });
  }

  private emit(c: NodeChange): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch (err) {
        this.log.error({ err }, "node change listener threw");
      }
    }
  }

  /** The live nodes (key present), by name. */
  nodes(): ReadonlyMap<string, NodeRecordV1> {
    return this.live;
  }

  alive(name: string): boolean {
    return this.live.has(name);
  }

  /** Calls `f` on every change (after the current set: read nodes() first). Returns an unsubscribe. */
  on(f: (c: NodeChange) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const u = this.unwatch;
    this.unwatch = undefined;
    await u?.().catch(() => undefined);
    this.listeners.clear();
  }
}
