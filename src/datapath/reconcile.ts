/**
 * The datapath reconciler: makes the kernel hold the desired state, at a cost
 * that follows the change.
 *
 *   apply(desired) ──applied before?──yes──> incremental.ts: delta of the changed parts ──> one nft
 *        │                                    (only elements changed, or only endpoints and hosts:
 *        │                                     one nfnl/setelem.ts batch, no nft)
 *        └─no (first apply, restart, after a refusal or a drift)──> compile whole
 *             ├─ the kernel's stamp is this digest (stamp.ts) ──> adopt it: zero ops, no read-back
 *             └─ else nft -j list table ──plan──> one `nft -f -` transaction (the difference)
 *   verify() (the agent calls it periodically and once after start, off the work queue):
 *        a view of what was applied (kernel-view.ts, built in slices) goes to a worker thread
 *        (verify-thread.ts) that reads the table and compares; the event loop parses nothing.
 *        Only on a difference: read the table here, plan against it; a read an apply overtook
 *        is killed then and dropped; a difference makes the next apply plan against that read
 *
 * Never flushes or recreates the table: an agent restarted with the same desired
 * state applies zero ops, so established connections and enforcement carry on
 * across restarts. Concurrent apply() calls are coalesced: while one runs, later
 * calls wait and the latest desired state is applied once for all of them.
 * stop() kills a running `nft` (the transaction is atomic: the kernel keeps the
 * old state, the next start reconciles) and the check's reader, and refuses further applies.
 */
import { MembraneError } from "../errors.js";
import { compile, compileAll } from "./compile.js";
import { appliedFromFull, cachedPart, ctxKeyOf, planIncremental, type Applied } from "./incremental.js";
import { digestOf, STAMP_MAP, stampMap } from "./stamp.js";
import { nftApply, nftListJson, run } from "./exec.js";
import { renderTable } from "./model.js";
import { plan, type Plan } from "./plan.js";
import { decodeElements, parseTable, type ActualTable } from "./readback.js";
import { SetElemWriter } from "./nfnl/setelem.js";
import { expectedView } from "./kernel-view.js";
import { CANCELLED, VerifyThread } from "./verify-thread.js";
import type { DatapathState } from "./types.js";
import type { HostTableView } from "../ipcache/hosts.js";

export interface ReconcilerParams {
  /** Network namespace holding the table (the node's); the current one when absent. */
  netns?: string;
  /** Table name (family inet). Default "membrane". */
  table?: string;
  /** NFLOG group of drop logs. Default 1. */
  logGroup?: number;
  /**
   * 0: every apply reads the table back and plans against it (tests, the
   * from-scratch side of comparisons). Otherwise (default) applies plan
   * against what was applied last and verify() checks the kernel in the background.
   */
  trustMs?: number;
  /**
   * Resolves when the agent has no change in hand (its work queue is idle). The background
   * check waits for it before each slice of its view and before it reads, so that it yields
   * to changes instead of competing with them (never for longer than VERIFY_YIELD_MAX_MS at a
   * time: an agent that is never idle is still checked, slowly).
   */
  idle?: () => Promise<void>;
  /** The bound on one such wait (default VERIFY_YIELD_MAX_MS). */
  idleMaxMs?: number;
}

/** The longest the background check waits for the agent to be idle before it goes on anyway. */
export const VERIFY_YIELD_MAX_MS = 2000;

export interface ApplyResult {
  changed: boolean;
  ops: number;
  ms: number;
}

interface Waiter {
  resolve: (r: ApplyResult) => void;
  reject: (e: unknown) => void;
}

export class Reconciler {
  readonly netns: string | undefined;
  readonly table: string;
  readonly logGroup: number;
  /**
   * How applies reached the kernel: nft transactions, nfnetlink element batches, adoptions by
   * stamp; read-backs parsed on this thread; verifies compared in the worker thread.
   */
  readonly stats = {
    ...{ nft: 0, nfnl: 0, adopted: 0, readBacks: 0, checksOffThread: 0, hostLinesSent: 0 },
    /** Checks whose read an apply overtook, killed then (their answer would have been dropped). */
    checksCancelled: 0,
  };
  /**
   * Where the last apply's time went (ms): planning the delta, and the kernel write (the
   * writer's acknowledgement, or nft). Two clock reads per apply, for the scale bench.
   */
  readonly lastTimings = { planMs: 0, writeMs: 0 };
  /** The last state the kernel accepted (realized), undefined before the first apply. */
  realized: DatapathState | undefined;
  private running = false;
  private readonly trustMs: number;
  private readonly idle: (() => Promise<void>) | undefined;
  private readonly idleMaxMs: number;
  /** Host-map element deltas without nft (started at the first one). */
  private writer: SetElemWriter | undefined;
  /** verify()'s reader and comparer (a worker thread, started at the first verify). */
  private checker: VerifyThread | undefined;
  /** The check running now (one at a time). */
  private checking: Promise<{ drift: number; lines: string[] }> | undefined;
  /** The hosts the check's worker holds: those of `applied` at host revision `revision`. */
  private hostsSent:
    { applied: Applied; worker: number; view: HostTableView | undefined; revision: number } | undefined;
  /** What the kernel accepted last, by part (undefined: plan the next apply against a read-back). */
  private applied: Applied | undefined;
  /** Successful applies so far: a read-back taken at another count is stale. */
  private seq = 0;
  /** A read-back verify() found different, for the next apply to repair from. */
  private kernelRead: { seq: number; actual: ActualTable } | undefined;
  private pending: { state: DatapathState; waiters: Waiter[] } | undefined;
  private readonly stopper = new AbortController();

  constructor(params: ReconcilerParams = {}) {
    this.netns = params.netns;
    this.table = params.table ?? "membrane";
    this.logGroup = params.logGroup ?? 1;
    this.trustMs = params.trustMs ?? 30_000;
    this.idle = params.idle;
    this.idleMaxMs = params.idleMaxMs ?? VERIFY_YIELD_MAX_MS;
  }

  private get nsOpt(): { netns?: string; signal: AbortSignal } {
    const signal = this.stopper.signal;
    return this.netns === undefined ? { signal } : { netns: this.netns, signal };
  }

  /**
   * Kills the `nft` running now (without waiting for it) and refuses every later apply; resolves
   * once the background check's reader is killed and reaped (no process of ours is left).
   */
  stop(): Promise<void> {
    this.stopper.abort();
    this.writer?.stop();
    return this.checker?.stop() ?? Promise.resolve();
  }

  /** A background check is running now (for the scale bench's restart figure). */
  get checkRunning(): boolean {
    return this.checking !== undefined;
  }

  private elements(): SetElemWriter {
    if (!this.writer) {
      this.writer = new SetElemWriter(this.netns);
      this.writer.warm();
    }
    return this.writer;
  }

  /** Computes the transaction that would bring the kernel to `desired`, without applying it. */
  async plan(desired: DatapathState): Promise<Plan> {
    const compiled = compile(desired, { table: this.table, logGroup: this.logGroup });
    const doc = await nftListJson("inet", this.table, this.nsOpt);
    return plan(compiled, doc === undefined ? undefined : parseTable(doc));
  }

  /** The human-readable difference between the kernel and `desired` (for `membrane datapath diff`). */
  async diff(desired: DatapathState): Promise<string[]> {
    return (await this.plan(desired)).lines;
  }

  /** The whole table text for `desired` (for display). */
  render(desired: DatapathState): string {
    return renderTable(compile(desired, { table: this.table, logGroup: this.logGroup }));
  }

  /** Applies `desired` in one atomic transaction; coalesces with calls already in flight. */
  apply(desired: DatapathState): Promise<ApplyResult> {
    if (this.running) {
      return new Promise((resolve, reject) => {
        if (this.pending) this.pending.state = desired;
        else this.pending = { state: desired, waiters: [] };
        this.pending.waiters.push({ resolve, reject });
      });
    }
    this.running = true;
    const first = this.applyOnce(desired);
    void first.then(
      () => this.drain(),
      () => this.drain(),
    );
    return first;
  }

  private async drain(): Promise<void> {
    while (this.pending) {
      const { state, waiters } = this.pending;
      this.pending = undefined;
      try {
        const r = await this.applyOnce(state);
        for (const w of waiters) w.resolve(r);
      } catch (e) {
        for (const w of waiters) w.reject(e);
      }
    }
    this.running = false;
  }

  private async applyOnce(desired: DatapathState): Promise<ApplyResult> {
    if (this.stopper.signal.aborted) {
      throw new MembraneError("NFT_APPLY_FAILED", "Cannot apply the nftables transaction: stopping");
    }
    const t0 = performance.now();
    const opts = { table: this.table, logGroup: this.logGroup };
    const done = (ops: number): ApplyResult => {
      this.realized = desired;
      this.seq++;
      // A check running now compares with a state this apply replaced: its read stops now.
      if (this.checking) this.checker?.cancel();
      return { changed: ops > 0, ops, ms: Math.round((performance.now() - t0) * 10) / 10 };
    };
    // What changed since the last apply, planned against what the kernel accepted
    // then (it took that transaction whole): no read-back, whose cost grows with
    // the table. Drift is found by verify(), in the background.
    const inc = this.applied && this.trustMs > 0 ? planIncremental(this.applied, desired, opts) : undefined;
    if (inc) {
      const t1 = performance.now();
      this.lastTimings.planMs = t1 - t0;
      try {
        if (inc.elementOps) {
          await this.elements().apply(this.table, inc.elementOps);
          this.stats.nfnl++;
        } else if (inc.objects) {
          await this.elements().applyMessages(inc.objects);
          this.stats.nfnl++;
        } else if (inc.plan.script !== "") {
          await nftApply(inc.plan.script, this.nsOpt);
          this.stats.nft++;
        }
        this.lastTimings.writeMs = performance.now() - t1;
        inc.commit();
        return done(inc.plan.ops);
      } catch (e) {
        if (this.stopper.signal.aborted) throw e;
        // The kernel refused: it no longer holds what we think. Plan against it.
        this.applied = undefined;
      }
    }
    const applied = this.applied;
    const key = ctxKeyOf(desired, opts);
    const { table, parts, groups, digest } = compileAll(desired, {
      ...opts,
      cached: (ep, ctx) => cachedPart(applied, ep, ctx, key),
    });
    this.applied = undefined;
    if (!digest) throw new Error("compileAll gave no digest");
    const repair = this.kernelRead?.seq === this.seq ? this.kernelRead.actual : undefined;
    this.kernelRead = undefined;
    // A restart (nothing applied yet by this process): when the kernel's stamp is the
    // digest of what we would write, it holds exactly that (as this agent or an earlier
    // one wrote it): adopt it without reading the whole table back.
    if (!repair && !applied && this.trustMs > 0 && (await this.readStamp()) === digest.total) {
      this.applied = appliedFromFull(desired, parts, groups, opts, digest);
      this.elements();
      this.stats.adopted++;
      return done(0);
    }
    const read = repair ?? (await this.readKernel());
    const p = plan(table, read);
    if (p.script !== "") {
      await nftApply(p.script, this.nsOpt);
      this.stats.nft++;
    }
    this.applied = appliedFromFull(desired, parts, groups, opts, digest);
    this.elements(); // started now, so that the first address change does not wait for it
    return done(p.ops);
  }

  private async readStamp(): Promise<bigint | undefined> {
    const doc = await nftListJson("inet", this.table, this.nsOpt, STAMP_MAP).catch(() => undefined);
    const m = doc === undefined ? undefined : parseTable(doc).maps.get(STAMP_MAP);
    return m ? digestOf(decodeElements(stampMap(undefined), m.rawElements)) : undefined;
  }

  private async readKernel(): Promise<ActualTable | undefined> {
    this.stats.readBacks++;
    const doc = await nftListJson("inet", this.table, this.nsOpt);
    return doc === undefined ? undefined : parseTable(doc);
  }

  /**
   * Compares the kernel with what was applied last, without holding up
   * applies: the table is read while they go on, and a read that an apply
   * overtook is dropped (the next verify reads again). Returns the number of
   * differences; when there are some, the next apply repairs them by delta,
   * planned against this read.
   */
  verify(): Promise<{ drift: number; lines: string[] }> {
    // One check at a time (the worker keeps the hosts of the views in the order sent): a call
    // while one runs gets that one's answer.
    if (this.checking) return this.checking;
    const c = this.verifyOnce().finally(() => {
      if (this.checking === c) this.checking = undefined;
    });
    return (this.checking = c);
  }

  private async verifyOnce(): Promise<{ drift: number; lines: string[] }> {
    const state = this.realized;
    const seq = this.seq;
    const applied = this.applied;
    if (!state || !applied || this.stopper.signal.aborted) return { drift: 0, lines: [] };
    // First in the background: the view is built a slice per turn of the event loop, and the
    // worker reads, parses and compares. The loop is never held for the size of the table.
    const stale = (): boolean => seq !== this.seq || this.applied !== applied;
    const checker = (this.checker ??= new VerifyThread(this.table, this.netns));
    const worker = checker.generation();
    // The worker holds the hosts of the last view it was sent: only the addresses changed since
    // go now (a new worker, a new Applied or a journal that no longer reaches: every host).
    const sent = this.hostsSent;
    const hosts = applied.hosts;
    const changes =
      sent && sent.applied === applied && sent.worker === worker && sent.view === hosts.view
        ? hosts.view?.changesSince(sent.revision)
        : undefined;
    const view = await expectedView(applied, () => this.yieldToChanges(), stale, changes?.keys());
    if (!view || stale()) return { drift: 0, lines: [] };
    await this.yieldToChanges();
    if (stale()) return { drift: 0, lines: [] };
    this.stats.hostLinesSent += changes ? changes.size : hosts.copy.size;
    this.hostsSent = { applied, worker, view: hosts.view, revision: hosts.revision };
    let diff: string | undefined | typeof CANCELLED;
    try {
      diff = await checker.compare(view, worker);
    } catch (e) {
      this.hostsSent = undefined;
      throw e;
    }
    if (diff === CANCELLED) this.stats.checksCancelled++;
    if (diff === CANCELLED || stale() || this.running) return { drift: 0, lines: [] };
    this.stats.checksOffThread++;
    if (diff === undefined) return { drift: 0, lines: [] };
    // A difference (rare: a hand edit, a bug): the whole comparison here, which plans the repair.
    return this.verifyWhole(state, seq);
  }

  /** One turn of the event loop, then waits (bounded) until the agent has no change in hand. */
  private async yieldToChanges(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    if (!this.idle) return;
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (timer = setTimeout(r, this.idleMaxMs).unref()));
    await Promise.race([this.idle(), bound]);
    clearTimeout(timer);
  }

  private async verifyWhole(state: DatapathState, seq: number): Promise<{ drift: number; lines: string[] }> {
    const actual = await this.readKernel();
    if (seq !== this.seq || this.running || !this.applied) return { drift: 0, lines: [] };
    const applied = this.applied;
    const opts = { table: this.table, logGroup: this.logGroup };
    const key = ctxKeyOf(state, opts);
    const { table } = compileAll(state, {
      ...opts,
      cached: (ep, ctx) => cachedPart(applied, ep, ctx, key),
    });
    const p = plan(table, actual);
    if (p.script === "") return { drift: 0, lines: [] };
    this.applied = undefined;
    this.kernelRead = actual === undefined ? undefined : { seq, actual };
    // ops 0 with a script: only the stamp differs (it is rewritten, not reported).
    return { drift: Math.max(p.ops, 1), lines: p.lines.slice(0, 20) };
  }

  /** Removes the table (endpoint teardown, tests). Enforcement stops: only for shutting a node down. */
  async deleteTable(): Promise<void> {
    await run(["nft", "delete", "table", "inet", this.table], {
      ...this.nsOpt,
      code: "NFT_APPLY_FAILED",
      what: `delete table inet ${this.table}`,
    });
    this.realized = undefined;
    this.applied = undefined;
    this.kernelRead = undefined;
  }
}
