/**
 * Remote endpoints: addresses of other nodes' endpoints, each carrying the
 * identity of its labels (the engine's ipcache holds them). Taken in bulk:
 * the cluster issue feeds them from the kvstore, thousands at a time.
 *
 *   upsert([{ip, namespace, labels, serviceAccount?}, ...]) | delete([ip, ...])
 *     --validate every entry (the first bad one rejects the request: nothing changes)
 *     --persist `remote-endpoints/<ip>` in transactions of STORE_TXN_OPS
 *       alongside: change the engine --> one enforce for the whole request
 *     --answer once both are done (store failed: engine and kernel put back)
 *
 * Addresses are kept in their canonical text form (`10.1.0.7`, `fd00::7`),
 * so `fd00:0::7` and `fd00::7` are one endpoint. Restored on start, before
 * the first enforce (the kernel never sees them vanish across a restart).
 */
import { MembraneError } from "../../errors.js";
import { addrString, containsAddr, parseAddr, parsePrefix } from "../../labels/cidr.js";
import { workloadLabels } from "../../labels/k8s.js";
import type { RemoteEndpointSpec } from "../../policy/query.js";
import type { TxnOp } from "../../store/store.js";
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";
import { txnAllOrNone } from "./store-txn.js";
import { validateName, validatePorts } from "./validate.js";

/** Store keys of remote endpoints: `remote-endpoints/<ip>` -> RemoteEndpointRecordV1. */
export const REMOTE_ENDPOINTS_KEY = "remote-endpoints/";

/** Entries one API request may carry (the body limit allows about this many). */
export const REMOTE_ENDPOINTS_PER_REQUEST = 10_000;

export interface RemoteEndpointRecordV1 {
  readonly v: 1;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
}

/** What a bulk request changed. */
export interface RemoteEndpointsResult {
  /** Entries added, changed or deleted. */
  readonly changed: number;
  /** Entries that already held what was asked (or, for a delete, were not known). */
  readonly unchanged: number;
  /** Kernel operations of the enforce (0 when nothing changed). */
  readonly kernelOps: number;
}

/** A Kubernetes service account name (a DNS subdomain). */
const SERVICE_ACCOUNT_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export class RemoteEndpointsController implements Controller {
  readonly name = "remote-endpoints";
  readonly revisions = new Revisions();
  /** What the store holds, by canonical address. */
  private readonly known = new Map<string, RemoteEndpointSpec>();
  /**
   * Where the last request's time went (ms): waiting for its turn on the work queue, the store
   * write (persisted), the enforce (engine, plan, kernel write). A few clock reads per request.
   */
  readonly lastTimings = { queueMs: 0, storeMs: 0, enforceMs: 0 };

  constructor(
    private readonly d: ControllerDeps,
    /** This node's pod CIDRs: their addresses are IPAM's to give to local endpoints only. */
    private readonly podCidrs: readonly string[] = [],
  ) {}

  get size(): number {
    return this.known.size;
  }

  async restore(): Promise<void> {
    const kvs = (await this.d.store.list(REMOTE_ENDPOINTS_KEY)).kvs;
    const engine = this.d.engine();
    let failed: unknown;
    for (const kv of kvs) {
      const ip = kv.key.slice(REMOTE_ENDPOINTS_KEY.length);
      try {
        const spec = specOf(ip, JSON.parse(kv.value) as RemoteEndpointRecordV1);
        engine.upsertRemoteEndpoint(spec);
        this.known.set(ip, spec);
      } catch (e) {
        // One bad record must not keep the node from enforcing the rest: its address stays unknown (world).
        this.d.logger.error({ key: kv.key, err: String(e) }, "skipped an unreadable remote endpoint record");
        failed = e;
      }
    }
    if (kvs.length > 0) this.revisions.bump();
    // After the bump: shown until a later change of remote endpoints is realized.
    if (failed !== undefined) this.revisions.fail(failed);
  }

  /** The remote endpoints known, sorted by address. */
  list(): (RemoteEndpointSpec & { identity: number })[] {
    return this.d
      .engine()
      .remoteEndpoints()
      .map((r) => ({ ...r.spec, identity: r.identity.id }))
      .sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
  }

  /** Adds or changes many remote endpoints: all or none; one enforce. */
  upsert(entries: readonly RemoteEndpointSpec[], signal?: AbortSignal): Promise<RemoteEndpointsResult> {
    const t0 = performance.now();
    return this.d.serial(
      async () => {
        this.lastTimings.queueMs = performance.now() - t0;
        const specs = this.validate(entries);
        const changed = specs.filter((s) => !sameSpec(this.known.get(s.ip), s));
        const ops: TxnOp[] = changed.map((s) => ({
          type: "put",
          key: REMOTE_ENDPOINTS_KEY + s.ip,
          value: JSON.stringify(recordOf(s)),
        }));
        return this.commit(ops, specs.length - changed.length, () => {
          const engine = this.d.engine();
          for (const s of changed) {
            engine.upsertRemoteEndpoint(s);
            this.known.set(s.ip, s);
          }
        });
      },
      signal,
      "remote endpoints upsert",
    );
  }

  /** Forgets many remote endpoints by address (unknown ones are left alone): all or none; one enforce. */
  delete(ips: readonly string[], signal?: AbortSignal): Promise<RemoteEndpointsResult> {
    const t0 = performance.now();
    return this.d.serial(
      async () => {
        this.lastTimings.queueMs = performance.now() - t0;
        const canon = ips.map((ip, i) => canonicalIp(ip, `ips[${i}]`, "delete"));
        const gone = [...new Set(canon)].filter((ip) => this.known.has(ip));
        const ops: TxnOp[] = gone.map((ip) => ({ type: "delete", key: REMOTE_ENDPOINTS_KEY + ip }));
        return this.commit(ops, canon.length - gone.length, () => {
          const engine = this.d.engine();
          for (const ip of gone) {
            engine.deleteRemoteEndpoint(ip);
            this.known.delete(ip);
          }
        });
      },
      signal,
      "remote endpoints delete",
    );
  }

  /**
   * Persists `ops` in transactions of STORE_TXN_OPS and, alongside, changes the
   * engine and enforces once: the kernel write does not wait for the store's
   * disk (the two overlap; the answer waits for both). A failed transaction
   * undoes the ones before it and the engine change, and enforces again, so a
   * failed request leaves the store and the kernel as they were.
   *
   * Crash safety: the kernel may hold the change a moment before the store does.
   * If the agent dies in that moment, the kernel's stamp (stamp.ts, written in
   * the same atomic batch) is not the digest of what the store holds, so the
   * next start reads the table and repairs it by delta to the store's state
   * (test/agent/controllers/remote-endpoints-overlap.test.ts).
   */
  private async commit(ops: TxnOp[], unchanged: number, change: () => void): Promise<RemoteEndpointsResult> {
    if (ops.length === 0) return { changed: 0, unchanged, kernelOps: 0 };
    const t0 = performance.now();
    // What the store and the engine held, for the undo: taken before anything changes.
    const prev = new Map(
      ops.map((op) => {
        const ip = op.key.slice(REMOTE_ENDPOINTS_KEY.length);
        return [ip, this.known.get(ip)] as const;
      }),
    );
    let storeMs = 0;
    const persisted = txnAllOrNone({
      store: this.d.store,
      ops,
      before: (key) => {
        const old = prev.get(key.slice(REMOTE_ENDPOINTS_KEY.length));
        return old && JSON.stringify(recordOf(old));
      },
      undoFailed: (u) =>
        this.d.logger.error({ err: String(u) }, "undoing a failed remote endpoints write failed"),
    }).then(
      () => void (storeMs = performance.now() - t0),
      (e: unknown) => {
        throw new MembraneError("STORE_FAILED", `Cannot store remote endpoints: ${String(e)}`, { cause: e });
      },
    );
    change();
    this.revisions.bump();
    let enforceMs = 0;
    const enforced = this.d.enforce().then((x) => {
      enforceMs = performance.now() - t0;
      return x;
    });
    const [w, r] = await Promise.allSettled([persisted, enforced]);
    if (w.status === "rejected") {
      // Not stored: the engine and the kernel go back to what the store holds.
      await this.undo(prev).catch((u: unknown) =>
        this.d.logger.error({ err: String(u) }, "undoing a remote endpoints change not stored failed"),
      );
      throw w.reason;
    }
    if (r.status === "rejected") throw r.reason;
    this.lastTimings.storeMs = storeMs;
    this.lastTimings.enforceMs = enforceMs;
    return { changed: ops.length, unchanged, kernelOps: r.value.ops };
  }

  /** Puts the engine back to `prev` (address -> spec, undefined: unknown) and enforces. */
  private async undo(prev: ReadonlyMap<string, RemoteEndpointSpec | undefined>): Promise<void> {
    const engine = this.d.engine();
    for (const [ip, spec] of prev) {
      if (spec) {
        engine.upsertRemoteEndpoint(spec);
        this.known.set(ip, spec);
      } else {
        engine.deleteRemoteEndpoint(ip);
        this.known.delete(ip);
      }
    }
    this.revisions.bump();
    await this.d.enforce();
  }

  /** Every entry checked before anything changes; the error names the first bad one by index. */
  private validate(entries: readonly RemoteEndpointSpec[]): RemoteEndpointSpec[] {
    const engine = this.d.engine();
    const seen = new Map<string, number>();
    return entries.map((e, i) => {
      const where = `endpoints[${i}]`;
      const ip = canonicalIp(e.ip, `${where}.ip`, "register");
      const bad = (path: string, why: string, cause?: unknown): MembraneError =>
        new MembraneError("ENDPOINT_INVALID", `Cannot register remote endpoints: ${path} (${ip}) ${why}`, {
          location: { path },
          ...(cause !== undefined ? { cause } : {}),
        });
      const first = seen.get(ip);
      if (first !== undefined) throw bad(`${where}.ip`, `repeats endpoints[${first}]`);
      seen.set(ip, i);
      try {
        validateName(e.namespace, "namespace");
        if (
          e.serviceAccount !== undefined &&
          (typeof e.serviceAccount !== "string" || !SERVICE_ACCOUNT_RE.test(e.serviceAccount))
        ) {
          throw new Error(
            `service account "${String(e.serviceAccount)}" is not a name (lower-case letters, digits, "-" and ".")`,
          );
        }
        workloadLabels({ namespace: e.namespace, labels: e.labels });
        if (e.namedPorts !== undefined) {
          if (!Array.isArray(e.namedPorts) || e.namedPorts.length > 64)
            throw new Error("namedPorts is not a list of at most 64 ports");
          validatePorts(e.namedPorts);
        }
      } catch (err) {
        throw bad(where, err instanceof Error ? err.message : String(err), err);
      }
      const local = engine.resolvePeer({ kind: "ip", ip }).endpoint;
      if (local) throw bad(`${where}.ip`, `belongs to local endpoint ${local.key}`);
      // A remote endpoint on a free address of this node's pod CIDR would make every later
      // local endpoint that IPAM hands that address fail: refused.
      const pool = this.podCidrs.find((c) => {
        const p = parsePrefix(c);
        return p !== undefined && containsAddr(p, ip);
      });
      if (pool !== undefined)
        throw bad(`${where}.ip`, `is in this node's pod CIDR ${pool} (local endpoints only)`);
      return {
        ip,
        namespace: e.namespace,
        labels: { ...e.labels },
        ...(e.serviceAccount !== undefined ? { serviceAccount: e.serviceAccount } : {}),
        ...(e.namedPorts && e.namedPorts.length > 0
          ? { namedPorts: e.namedPorts.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })) }
          : {}),
      };
    });
  }
}

function canonicalIp(ip: unknown, path: string, what: "register" | "delete"): string {
  const a = typeof ip === "string" ? parseAddr(ip) : undefined;
  if (!a) {
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot ${what} remote endpoints: ${path} "${String(ip).slice(0, 64)}" is not an IP address`,
      { location: { path } },
    );
  }
  return addrString(a.family, a.value);
}

function recordOf(s: RemoteEndpointSpec): RemoteEndpointRecordV1 {
  return {
    v: 1,
    namespace: s.namespace,
    labels: s.labels,
    ...(s.serviceAccount !== undefined ? { serviceAccount: s.serviceAccount } : {}),
  };
}

function specOf(ip: string, r: RemoteEndpointRecordV1): RemoteEndpointSpec {
  return {
    ip,
    namespace: r.namespace,
    labels: r.labels,
    ...(r.serviceAccount !== undefined ? { serviceAccount: r.serviceAccount } : {}),
  };
}

function sameSpec(a: RemoteEndpointSpec | undefined, b: RemoteEndpointSpec): boolean {
  if (!a || a.namespace !== b.namespace || a.serviceAccount !== b.serviceAccount) return false;
  const ka = Object.keys(a.labels);
  return ka.length === Object.keys(b.labels).length && ka.every((k) => a.labels[k] === b.labels[k]);
}
