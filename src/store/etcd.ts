/**
 * The etcd backend: the same Store over an etcd v3 cluster, for many hosts.
 *
 *   Store call ──▶ etcd3 (pure JS, gRPC via @grpc/grpc-js) ──▶ etcd KV / Watch
 *
 * Every key lives under `prefix` (default "membrane/"), so one etcd can hold
 * other data too. Requests go to the raw KV service rather than the etcd3
 * builders: a txn with an arbitrary list of compares (possibly none) maps
 * one to one onto etcd's Txn. Watches resume by themselves after a
 * disconnect (the library re-subscribes from the last seen revision).
 */
import { ExponentialBackoff } from "cockatiel";
import { Etcd3, type IKeyValue, type IRequestOp } from "etcd3";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { grantKeptLease, type StoreLease } from "./etcd-lease.js";
import { validateKey, validateTxn } from "./validate.js";
import type {
  KeyValue,
  Store,
  TxnRequest,
  TxnResult,
  Unsubscribe,
  WatchEvent,
  WatchOptions,
} from "./store.js";

export type { StoreLease };

export interface EtcdStoreParams {
  /** Client URLs, e.g. ["http://127.0.0.1:2379"]. */
  endpoints: readonly string[];
  logger: Logger;
  /** Namespace for every key (default "membrane/"). */
  prefix?: string;
  /** How long to wait for a connection before a call fails (default 5 s). */
  dialTimeoutMs?: number;
  /** TLS to etcd (https:// endpoints): the CA that signed etcd's certificate, and this client's certificate and key (PEM). */
  tls?: { readonly ca: Buffer; readonly cert?: Buffer; readonly key?: Buffer };
  /** etcd password authentication (when client certificates are not used to name the user). */
  auth?: { readonly username: string; readonly password: string };
}

/** The smallest key greater than every key that starts with `p` (etcd's range_end for a prefix). */
export function prefixEnd(p: Buffer): Buffer {
  const end = Buffer.from(p);
  for (let i = end.length - 1; i >= 0; i--) {
    if ((end[i] ?? 0) < 0xff) {
      end[i] = (end[i] ?? 0) + 1;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // every byte is 0xff (or p is empty): to the end of the keyspace
}

/** How long a watch's cancel may wait for etcd's answer before the watch is let go anyway. */
const WATCH_CANCEL_MS = 2000;

export class EtcdStore implements Store {
  private readonly client: Etcd3;
  private readonly ns: string;
  /** The cancel of every watch still open (close() runs them). */
  private readonly watchers = new Set<() => Promise<void>>();
  private readonly leases = new Set<StoreLease>();

  /** The prefix every key lives under (etcd's keys are this + the store's key). */
  get prefix(): string {
    return this.ns;
  }

  constructor(private readonly p: EtcdStoreParams) {
    this.ns = p.prefix ?? "membrane/";
    this.client = new Etcd3({
      hosts: [...p.endpoints],
      dialTimeout: p.dialTimeoutMs ?? 5000,
      // A broken watch stream is opened again after at most 5 s (etcd3's default grows to 30 s): a
      // node notices etcd's return sooner, and a closed client's last retry timer is short.
      // (etcd3 types this option as a backoff and calls next() on it first: the factory's first step.)
      faultHandling: {
        watchBackoff: new ExponentialBackoff({ initialDelay: 250, maxDelay: 5000 }).next(),
      },
      ...(p.tls
        ? {
            credentials: {
              rootCertificate: p.tls.ca,
              ...(p.tls.key ? { privateKey: p.tls.key } : {}),
              ...(p.tls.cert ? { certChain: p.tls.cert } : {}),
            },
          }
        : {}),
      ...(p.auth ? { auth: { username: p.auth.username, password: p.auth.password } } : {}),
      // Lists of many large values exceed gRPC's 4 MiB default.
      grpcOptions: { "grpc.max_receive_message_length": 256 << 20 },
    });
  }

  private k(key: string): Buffer {
    return Buffer.from(this.ns + key, "utf8");
  }

  private kv(kv: IKeyValue): KeyValue {
    return {
      key: kv.key.toString("utf8").slice(this.ns.length),
      value: kv.value.toString("utf8"),
      createRevision: Number(kv.create_revision),
      modRevision: Number(kv.mod_revision),
    };
  }

  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof MembraneError) throw e;
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot ${what} in etcd at ${this.p.endpoints.join(",")}: ${(e as Error).message}`,
        {
          cause: e,
          hint: "check that etcd is running and reachable from this host (`etcdctl endpoint health`)",
        },
      );
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    return this.call(`read ${JSON.stringify(key)}`, async () => {
      const r = await this.client.kv.range({ key: this.k(key) });
      const kv = r.kvs[0];
      return kv ? this.kv(kv) : undefined;
    });
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    return this.call(`list ${JSON.stringify(prefix)}`, async () => {
      const key = this.k(prefix);
      const r = await this.client.kv.range({
        key,
        range_end: prefixEnd(key),
        sort_target: "Key",
        sort_order: "Ascend",
      });
      return { kvs: r.kvs.map((kv) => this.kv(kv)), revision: Number(r.header.revision) };
    });
  }

  async put(key: string, value: string): Promise<number> {
    validateTxn({ compare: [], ops: [{ type: "put", key, value }] });
    return this.call(`write ${JSON.stringify(key)}`, async () => {
      const r = await this.client.kv.put({ key: this.k(key), value: Buffer.from(value, "utf8") });
      return Number(r.header.revision);
    });
  }

  async delete(key: string): Promise<number> {
    validateKey(key);
    return this.call(`delete ${JSON.stringify(key)}`, async () => {
      const r = await this.client.kv.deleteRange({ key: this.k(key) });
      return Number(r.header.revision);
    });
  }

  async txn(req: TxnRequest): Promise<TxnResult> {
    validateTxn(req);
    return this.call("run a transaction", async () => {
      const success: IRequestOp[] = req.ops.map((op) =>
        op.type === "put"
          ? {
              request_put: {
                key: this.k(op.key),
                value: Buffer.from(op.value, "utf8"),
                ...(op.lease !== undefined ? { lease: op.lease } : {}),
              },
            }
          : { request_delete_range: { key: this.k(op.key) } },
      );
      const r = await this.client.kv.txn({
        // modRevision 0 means "absent": compare the create revision, which is 0 only for a missing key.
        compare: req.compare.map((c) =>
          c.prefix !== undefined
            ? // Over a range etcd holds a compare when it holds for every key there (and, for a
              // range without keys, for a key of revision 0): "modRevision < since + 1" for all.
              { key: this.k(c.prefix), range_end: prefixEnd(this.k(c.prefix)), target: "Mod", result: "Less", mod_revision: c.unchangedSince + 1 } // prettier-ignore
            : c.modRevision === 0
              ? { key: this.k(c.key), target: "Create", result: "Equal", create_revision: 0 }
              : { key: this.k(c.key), target: "Mod", result: "Equal", mod_revision: c.modRevision },
        ),
        success,
        failure: [],
      });
      return { succeeded: r.succeeded, revision: Number(r.header.revision) };
    });
  }

  async watch(
    prefix: string,
    fromRevision: number,
    cb: (ev: WatchEvent) => void,
    opts?: WatchOptions,
  ): Promise<Unsubscribe> {
    return this.call(`watch ${JSON.stringify(prefix)}`, async () => {
      let b = this.client.watch().prefix(this.ns + prefix);
      if (fromRevision > 0) b = b.startRevision(String(fromRevision));
      const w = await b.create();
      const deliver = (type: "put" | "delete", kv: IKeyValue): void => {
        const k = this.kv(kv);
        try {
          cb({ type, key: k.key, value: type === "put" ? k.value : "", revision: k.modRevision });
        } catch (err) {
          this.p.logger.error({ err }, "store watcher callback threw");
        }
      };
      w.on("put", (kv) => deliver("put", kv));
      w.on("delete", (kv) => deliver("delete", kv));
      w.on("disconnected", (err) =>
        this.p.logger.warn({ err: err.message }, "etcd watch disconnected; resuming"),
      );
      w.on("error", (err) => {
        const e = new MembraneError(
          "STORE_FAILED",
          `Cannot watch ${JSON.stringify(prefix)} in etcd: ${err.message}`,
          {
            cause: err,
            hint: "list the prefix again and watch from the list's revision + 1",
          },
        );
        if (opts?.onError) opts.onError(e);
        else this.p.logger.error({ err: e.message }, "etcd watch failed");
      });
      const cancel = async (): Promise<void> => {
        if (!this.watchers.delete(cancel)) return;
        // Bounded: etcd3's cancel waits for the server's answer, which never comes while etcd is away.
        let t: NodeJS.Timeout | undefined;
        await Promise.race([
          w.cancel().catch(() => undefined),
          new Promise<void>((r) => (t = setTimeout(r, WATCH_CANCEL_MS))),
        ]);
        clearTimeout(t);
      };
      this.watchers.add(cancel);
      return cancel;
    });
  }

  /** Grants a lease of `ttlSeconds` (kept alive until revoked or released); see StoreLease. */
  async grantLease(ttlSeconds: number, onLost: (err: Error) => void): Promise<StoreLease> {
    if (!Number.isInteger(ttlSeconds) || ttlSeconds < 2) {
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot grant an etcd lease of ${ttlSeconds} s: the TTL must be an integer >= 2`,
      );
    }
    return this.call(`grant a lease of ${ttlSeconds} s`, async () => {
      const lease = await grantKeptLease(this.client, ttlSeconds, (err) =>
        onLost(
          new MembraneError("STORE_FAILED", `The etcd lease of this node expired: ${err.message}`, {
            cause: err,
          }),
        ),
      );
      this.leases.add(lease);
      return {
        ...lease,
        revoke: () => {
          this.leases.delete(lease);
          return this.call("revoke a lease", () => lease.revoke());
        },
        release: () => {
          this.leases.delete(lease);
          lease.release();
        },
      };
    });
  }

  async revision(): Promise<number> {
    return this.call("read the revision", async () => {
      // A range over one key that cannot exist still carries the cluster's revision.
      const r = await this.client.kv.range({
        key: Buffer.from(this.ns + "\u0000revision"),
        count_only: true,
      });
      return Number(r.header.revision);
    });
  }

  /**
   * Cancels every watch still open, then closes the client. etcd3 keeps a watch
   * that was never cancelled alive after close(): its watch manager retries the
   * stream forever on ref'd timers (up to 30 s apart), which kept a test process
   * alive for minutes after its last test. Leases are released (no keep-alives
   * through a closed client).
   */
  async close(): Promise<void> {
    await Promise.all([...this.watchers].map((c) => c()));
    for (const l of this.leases) l.release(); // no keep-alives through a closed client
    this.leases.clear();
    this.client.close();
  }
}
