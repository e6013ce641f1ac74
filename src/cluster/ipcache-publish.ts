/**
 * Publishing this node's endpoints to the cluster ipcache: every address of
 * every local endpoint as `cluster/ipcache/<node>/<ip>` (IpcacheEntryV1),
 * put on the node's lease, so that etcd deletes them when the node dies.
 *
 *   local endpoints --desired--> diff with what was put --> txns of <= 128 ops (puts on the lease, deletes)
 *
 * Kept in step by `changed()` (an endpoint created, relabelled or deleted)
 * and a periodic full pass. The first pass after start lists the node's own
 * prefix and puts every entry again (re-attaching it to this run's lease)
 * and deletes the ones no endpoint holds any more.
 */
import { Coalescer } from "./coalesce.js";
import type { Logger } from "pino";
import { addrString, parseAddr } from "../labels/cidr.js";
import type { StoreLease } from "../store/etcd.js";
import type { TxnOp } from "../store/store.js";
import type { ClusterContext } from "./context.js";
import { ipcachePrefix, type IpcacheEntryV1 } from "./keys.js";

/** Ops per etcd transaction (etcd's default limit is 128). */
export const IPCACHE_TXN_OPS = 128;

/** What the publisher needs to know of a local endpoint (the agent's EndpointView has it). */
export interface LocalEndpoint {
  readonly namespace: string;
  readonly name: string;
  readonly identity: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly ipv4?: string;
  readonly ipv6?: string;
  readonly ports?: IpcacheEntryV1["ports"];
}

export class IpcachePublisher {
  /** What the store holds for this node: key -> value (as this run put it or found it). */
  private readonly published = new Map<string, string>();
  private first = true;
  private readonly passes = new Coalescer(
    () => this.passOnce(),
    () => this.stopped,
  );
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  lastError: string | undefined;
  /** Transactions written (a measure of etcd writes). */
  txns = 0;
  private lease: StoreLease;

  constructor(
    private readonly ctx: ClusterContext,
    private readonly endpoints: () => readonly LocalEndpoint[],
    private readonly logger: Logger,
    private readonly retryMs = 2000,
  ) {
    this.lease = ctx.lease;
  }

  /** The entries the local endpoints want: key -> value. */
  desired(): Map<string, string> {
    const prefix = ipcachePrefix(this.ctx.node);
    const out = new Map<string, string>();
    for (const e of this.endpoints()) {
      const entry: IpcacheEntryV1 = {
        v: 1,
        identity: e.identity,
        namespace: e.namespace,
        name: e.name,
        labels: e.labels,
        ...(e.ports && e.ports.length > 0 ? { ports: e.ports } : {}),
      };
      for (const ip of [e.ipv4, e.ipv6]) {
        const a = ip === undefined ? undefined : parseAddr(ip);
        if (a) out.set(prefix + addrString(a.family, a.value), JSON.stringify(entry));
      }
    }
    return out;
  }

  /** Publishes the difference now (and again if changed meanwhile); resolves when done. */
  changed(): Promise<void> {
    return this.passes.run();
  }

  /** Puts every entry again (on `lease` from now on: the node's lease was lost and re-granted). */
  republish(lease?: StoreLease): Promise<void> {
    if (lease) this.lease = lease;
    this.first = true;
    return this.changed();
  }

  private async passOnce(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    try {
      await this.publish();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.logger.error(
        { err: this.lastError },
        "publishing endpoints to the cluster ipcache failed; retrying",
      );
      if (!this.stopped) (this.retry = setTimeout(() => void this.changed(), this.retryMs)).unref();
    }
  }

  private async publish(): Promise<void> {
    const want = this.desired();
    const full = this.first;
    if (full) {
      this.published.clear();
      for (const kv of (await this.ctx.kv.list(ipcachePrefix(this.ctx.node))).kvs) {
        this.published.set(kv.key, kv.value);
      }
    }
    const ops: TxnOp[] = [];
    for (const [key, value] of want) {
      if (full || this.published.get(key) !== value)
        ops.push({ type: "put", key, value, lease: this.lease.id });
    }
    for (const key of this.published.keys()) if (!want.has(key)) ops.push({ type: "delete", key });
    for (let i = 0; i < ops.length; i += IPCACHE_TXN_OPS) {
      const chunk = ops.slice(i, i + IPCACHE_TXN_OPS);
      await this.ctx.kv.txn({ compare: [], ops: chunk });
      this.txns++;
      for (const op of chunk) {
        if (op.type === "put") this.published.set(op.key, op.value);
        else this.published.delete(op.key);
      }
    }
    this.first = false;
    if (ops.length > 0) this.logger.debug({ ops: ops.length }, "cluster ipcache published");
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.passes.running;
  }
}
