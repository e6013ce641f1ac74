/**
 * The embedded store: durable key-value state for one host, in two files of
 * the state directory.
 *
 *   put/delete/txn ─▶ batch ─▶ append records to store.log ─▶ fdatasync ─▶ apply + notify ─▶ resolve
 *   open: store.snap (revision N) + store.log records after N  (torn tail: truncated, logged)
 *   compaction: store.snap.tmp ─fsync─▶ rename to store.snap ─fsync dir─▶ truncate store.log
 *
 * A write resolves only after its record is on disk, so it survives kill -9
 * and power loss. Writes that arrive together share one fsync (group commit);
 * each txn is one record, so it is applied whole or not at all. A crash
 * between the snapshot's rename and the log's truncation is harmless: records
 * at or below the snapshot's revision are skipped on open. store.lock keeps a
 * second agent out.
 */
import { constants } from "node:fs";
import { mkdir, open, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { KvState, Staging, type Change } from "./kvstate.js";
import { lockDir, type DirLock } from "./lock.js";
import { decodeRecords, encodeRecord } from "./record.js";
import { readSnapshot, syncDir, writeSnapshot } from "./snapshot.js";
import { validateTxn } from "./validate.js";
import type {
  KeyValue,
  Store,
  TxnRequest,
  TxnResult,
  Unsubscribe,
  WatchEvent,
  WatchOptions,
} from "./store.js";

export const LOG_FILE = "store.log";
export { SNAPSHOT_FILE } from "./snapshot.js";

export interface EmbeddedStoreParams {
  /** The state directory (created 0700 if missing). */
  dir: string;
  logger: Logger;
  /** Compact the log into a snapshot once it grows past this many bytes (default 16 MiB). */
  compactAfterBytes?: number;
  /** History kept for watches that start in the past (default 100k events, 64 MiB). */
  historyEvents?: number;
  historyBytes?: number;
}

interface Pending {
  readonly req: TxnRequest;
  readonly resolve: (r: TxnResult) => void;
  readonly reject: (e: unknown) => void;
}

function fail(what: string, e: unknown): MembraneError {
  return new MembraneError("STORE_FAILED", `Cannot ${what}: ${(e as Error).message}`, { cause: e });
}

export class EmbeddedStore implements Store {
  private readonly state: KvState;
  private log: FileHandle | undefined;
  private logSize = 0;
  private pending: Pending[] = [];
  private flushing: Promise<void> | undefined;
  private compactWaiters: { resolve: () => void; reject: (e: unknown) => void }[] = [];
  private broken: MembraneError | undefined;
  private closed = false;

  private constructor(
    private readonly p: EmbeddedStoreParams,
    private readonly lock: DirLock,
  ) {
    this.state = new KvState(
      { events: p.historyEvents ?? 100_000, bytes: p.historyBytes ?? 64 << 20 },
      (err) => p.logger.error({ err }, "store watcher callback threw"),
    );
  }

  /** Locks the directory, loads the snapshot and replays the log. */
  static async open(p: EmbeddedStoreParams): Promise<EmbeddedStore> {
    await mkdir(p.dir, { recursive: true, mode: 0o700 });
    const lock = await lockDir(p.dir);
    const s = new EmbeddedStore(p, lock);
    try {
      await s.load();
    } catch (e) {
      await s.log?.close().catch(() => undefined);
      await lock.release();
      throw e;
    }
    return s;
  }

  private async load(): Promise<void> {
    const dir = this.p.dir;
    const snap = await readSnapshot(dir);
    if (snap) this.state.load(snap.revision, snap.kvs);
    const logPath = join(dir, LOG_FILE);
    // O_DSYNC: a write returns once its data (and the size needed to read it) is on disk, as
    // write + fdatasync did, in one threadpool operation instead of two: one turn of the event
    // loop less per commit, which is what a commit waited for when the loop was busy.
    const flags = constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | constants.O_DSYNC;
    this.log = await open(logPath, flags, 0o600).catch((e: unknown) => {
      throw fail(`open ${logPath}`, e);
    });
    await syncDir(this.p.dir); // the log's directory entry must survive a crash too
    const buf = await this.log.readFile();
    const d = decodeRecords(buf);
    for (const payload of d.payloads) {
      const change = JSON.parse(payload.toString("utf8")) as Change;
      if (change.revision > this.state.revision) this.state.apply(change);
    }
    this.logSize = d.validBytes;
    if (d.problem !== undefined) {
      this.p.logger.warn(
        {
          file: logPath,
          problem: d.problem,
          droppedBytes: buf.length - d.validBytes,
          revision: this.state.revision,
        },
        "store log has a torn or corrupt tail; truncating it (writes there were never acknowledged)",
      );
      await this.log.truncate(d.validBytes);
      await this.log.sync();
    }
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.usable();
    return this.state.kvs.get(key);
  }

  async list(prefix: string): Promise<{ kvs: KeyValue[]; revision: number }> {
    this.usable();
    const kvs = [...this.state.kvs.values()].filter((kv) => kv.key.startsWith(prefix));
    kvs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return { kvs, revision: this.state.revision };
  }

  async put(key: string, value: string): Promise<number> {
    return (await this.txn({ compare: [], ops: [{ type: "put", key, value }] })).revision;
  }

  async delete(key: string): Promise<number> {
    return (await this.txn({ compare: [], ops: [{ type: "delete", key }] })).revision;
  }

  txn(req: TxnRequest): Promise<TxnResult> {
    try {
      this.usable();
      validateTxn(req);
      if (req.ops.some((op) => op.type === "put" && op.lease !== undefined)) {
        throw new MembraneError(
          "STORE_FAILED",
          "Cannot attach a key to a lease in the embedded store: leases exist only in etcd (cluster mode)",
        );
      }
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ req, resolve, reject });
      this.kick();
    });
  }

  /** Starts the writer unless it is running; it drains `pending` and compaction requests. */
  private kick(): void {
    this.flushing ??= this.flush().catch((e: unknown) => {
      // Only a bug gets here (write errors are handled per batch): fail loudly, never hang callers.
      this.broken = fail(`write to the store in ${this.p.dir}`, e);
      for (const item of this.pending.splice(0)) item.reject(this.broken);
      for (const w of this.compactWaiters.splice(0)) w.reject(this.broken);
      this.flushing = undefined;
    });
  }

  async watch(
    prefix: string,
    fromRevision: number,
    cb: (ev: WatchEvent) => void,
    _opts?: WatchOptions,
  ): Promise<Unsubscribe> {
    this.usable();
    const off = this.state.watch(prefix, fromRevision, cb);
    return async () => off();
  }

  async revision(): Promise<number> {
    this.usable();
    return this.state.revision;
  }

  /** Writes a snapshot of the current state and empties the log. */
  compact(): Promise<void> {
    try {
      this.usable();
    } catch (e) {
      return Promise.reject(e);
    }
    // Through the writer, so that no append runs while the log is being truncated.
    return new Promise((resolve, reject) => {
      this.compactWaiters.push({ resolve, reject });
      this.kick();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.flushing;
    this.state.clearWatchers();
    await this.log?.close().catch(() => undefined);
    await this.lock.release();
  }

  private usable(): void {
    if (this.closed)
      throw new MembraneError("STORE_FAILED", `Cannot use the store in ${this.p.dir}: it is closed`);
    if (this.broken) throw this.broken;
  }

  /** The writer (group commit): runs batches and compactions one at a time until nothing waits. */
  private async flush(): Promise<void> {
    // Let requests issued in the same tick join the batch.
    await new Promise<void>((r) => setImmediate(r));
    for (;;) {
      if (this.pending.length === 0 && this.compactWaiters.length === 0) {
        // Cleared in the same tick as the last check, so a request queued after it starts a new flush.
        this.flushing = undefined;
        return;
      }
      await this.writeBatch();
      const waiters = this.compactWaiters.splice(0);
      if (waiters.length > 0 || this.logSize >= (this.p.compactAfterBytes ?? 16 << 20)) {
        try {
          await this.compactNow();
          for (const w of waiters) w.resolve();
        } catch (err) {
          this.p.logger.error(
            { err },
            "store compaction failed; the log keeps growing until the next attempt",
          );
          for (const w of waiters) w.reject(fail(`compact the store in ${this.p.dir}`, err));
        }
      }
    }
  }

  /** Stages every waiting request, appends them with one fsync, then applies and answers them. */
  private async writeBatch(): Promise<void> {
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const staging = new Staging(this.state);
    const changes: Change[] = [];
    const results: TxnResult[] = [];
    for (const item of batch) {
      if (!staging.holds(item.req.compare)) {
        results.push({ succeeded: false, revision: staging.revision });
        continue;
      }
      const change = staging.stage(item.req.ops);
      if (change) changes.push(change);
      results.push({ succeeded: true, revision: staging.revision });
    }
    try {
      await this.append(changes);
    } catch (e) {
      for (const item of batch) item.reject(e);
      return;
    }
    for (const c of changes) this.state.apply(c);
    batch.forEach((item, i) =>
      item.resolve(results[i] ?? { succeeded: false, revision: this.state.revision }),
    );
  }

  private async append(changes: readonly Change[]): Promise<void> {
    if (changes.length === 0 || !this.log) return;
    const buf = Buffer.concat(changes.map((c) => encodeRecord(Buffer.from(JSON.stringify(c), "utf8"))));
    try {
      await this.log.write(buf, 0, buf.length, this.logSize); // durable when it returns (O_DSYNC)
      this.logSize += buf.length;
    } catch (e) {
      const err = fail(`write to ${join(this.p.dir, LOG_FILE)}`, e);
      // Cut off what may have been half-written, so the next record starts on a clean boundary.
      await this.log.truncate(this.logSize).catch(() => {
        this.broken = err;
      });
      throw err;
    }
  }

  private async compactNow(): Promise<void> {
    if (!this.log) return;
    const keys = await writeSnapshot(this.p.dir, this.state.revision, this.state.kvs.values());
    // Only now is the snapshot durable; the log's records are redundant and can go.
    await this.log.truncate(0);
    await this.log.sync();
    this.logSize = 0;
    this.p.logger.info({ dir: this.p.dir, revision: this.state.revision, keys }, "store compacted");
  }
}
