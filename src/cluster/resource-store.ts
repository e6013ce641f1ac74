/**
 * The seam that makes policies, namespaces and services cluster-wide: the
 * store their controllers are given in cluster mode. Their keys go to etcd
 * under `cluster/` (keys.ts), everything else stays node-local:
 *
 *   policies/<kind>/<ns>/<name>  ──▶ etcd  cluster/policies/<kind>/<ns>/<name>
 *   namespaces/<name>            ──▶ etcd  cluster/namespaces/<name>
 *   services/<ns>/<name>         ──▶ etcd  cluster/services/<ns>/<name>
 *   lb/{services,slices}/<ns>/<name> ──▶ etcd  cluster/lb/...   (Services in the kernel, controllers/lb.ts)
 *   lb/alloc/{ip,node-port}/...      ──▶ etcd  cluster/lb/alloc/... (their reservations, lb/reservations.ts)
 *   anything else                ──▶ the node's embedded store
 *
 * The controllers are unchanged: they validate, write through this store
 * (now to etcd, all or none as before) and change their engine. What other
 * nodes write reaches them through the watch in resources.ts. The revision
 * of the newest resource write is kept (`lastWrite`): `apply --wait` waits
 * for every node to realize it.
 */
import { MembraneError } from "../errors.js";
import {
  compareKey,
  type KeyValue,
  type Store,
  type TxnRequest,
  type TxnResult,
  type Unsubscribe,
  type WatchEvent,
  type WatchOptions,
} from "../store/store.js";
import { CLUSTER } from "./keys.js";

/** The node-local key prefixes whose records are cluster-wide (agent/records.ts, services.ts, lb.ts). */
export const CLUSTER_RESOURCE_PREFIXES = ["policies/", "namespaces/", "services/", "lb/"] as const;

export function isClusterResourceKey(key: string): boolean {
  return CLUSTER_RESOURCE_PREFIXES.some((p) => key.startsWith(p));
}

export class ClusterResourceStore implements Store {
  private lastWriteRev = 0;

  /** `local`: the node's own store; `kv`: the shared etcd (keys under `cluster/`). */
  constructor(
    private readonly local: Store,
    private readonly kv: Store,
  ) {}

  /** The etcd revision of the newest resource write through this store (0: none yet). */
  get lastWrite(): number {
    return this.lastWriteRev;
  }

  private route(key: string): { s: Store; k: string; cluster: boolean } {
    return isClusterResourceKey(key)
      ? { s: this.kv, k: CLUSTER + key, cluster: true }
      : { s: this.local, k: key, cluster: false };
  }

  private wrote(rev: number): number {
    if (rev > this.lastWriteRev) this.lastWriteRev = rev;
    return rev;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    const r = this.route(key);
    const kv = await r.s.get(r.k);
    return kv && r.cluster ? { ...kv, key } : kv;
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    const r = this.route(prefix);
    if (!r.cluster) {
      // A prefix wider than a resource prefix (e.g. "") would mix two stores: refused, not guessed.
      if (CLUSTER_RESOURCE_PREFIXES.some((p) => p.startsWith(prefix))) throw mixed(`list ${prefix}`);
      return this.local.list(prefix);
    }
    const out = await this.kv.list(r.k);
    return {
      kvs: out.kvs.map((kv) => ({ ...kv, key: kv.key.slice(CLUSTER.length) })),
      revision: out.revision,
    };
  }

  async put(key: string, value: string): Promise<number> {
    const r = this.route(key);
    const rev = await r.s.put(r.k, value);
    return r.cluster ? this.wrote(rev) : rev;
  }

  async delete(key: string): Promise<number> {
    const r = this.route(key);
    const rev = await r.s.delete(r.k);
    return r.cluster ? this.wrote(rev) : rev;
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    const keys = [...req.compare.map(compareKey), ...req.ops.map((o) => o.key)];
    const cluster = keys.filter(isClusterResourceKey).length;
    if (cluster === 0) return this.local.txn(req);
    if (cluster !== keys.length) throw mixed("run a transaction");
    const res = await this.kv.txn({
      compare: req.compare.map((c) =>
        c.prefix !== undefined ? { ...c, prefix: CLUSTER + c.prefix } : { ...c, key: CLUSTER + c.key },
      ),
      ops: req.ops.map((o) => ({ ...o, key: CLUSTER + o.key })),
    });
    if (res.succeeded) this.wrote(res.revision);
    return res;
  }

  watch(
    prefix: string,
    fromRevision: number,
    cb: (ev: WatchEvent) => void,
    opts?: WatchOptions,
  ): Promise<Unsubscribe> {
    const r = this.route(prefix);
    if (!r.cluster) return this.local.watch(prefix, fromRevision, cb, opts);
    return this.kv.watch(r.k, fromRevision, (ev) => cb({ ...ev, key: ev.key.slice(CLUSTER.length) }), opts);
  }

  /** The node-local store's revision (the cluster's is `kv.revision()`). */
  revision(): Promise<number> {
    return this.local.revision();
  }

  /** Closes nothing: both stores belong to whoever opened them (run.ts). */
  async close(): Promise<void> {}
}

function mixed(what: string): MembraneError {
  return new MembraneError(
    "STORE_FAILED",
    `Cannot ${what}: it spans node-local keys and cluster-wide resources (etcd), which no transaction can join`,
  );
}
