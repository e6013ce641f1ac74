/**
 * The datapath reconciler: makes the kernel hold the desired state.
 *
 *   apply(desired) ──compile──> CompiledTable ─┐
 *                 nft -j list table ──parse──> ActualTable ──plan──> one `nft -f -` transaction
 *
 * Never flushes or recreates the table: an agent restarted with the same desired
 * state reads the kernel, finds nothing to do and applies zero ops, so
 * established connections and enforcement carry on across restarts.
 * Concurrent apply() calls are coalesced: while one runs, later calls wait and
 * the latest desired state is applied once for all of them. stop() kills a
 * running `nft` (the transaction is atomic: the kernel keeps the old state,
 * the next start reconciles) and refuses further applies.
 */
import { MembraneError } from "../errors.js";
import { compile } from "./compile.js";
import { nftApply, nftListJson, run } from "./exec.js";
import { renderTable, type CompiledTable } from "./model.js";
import { asActual, plan, type Plan } from "./plan.js";
import { parseTable } from "./readback.js";
import type { DatapathState } from "./types.js";

export interface ReconcilerParams {
  /** Network namespace holding the table (the node's); the current one when absent. */
  netns?: string;
  /** Table name (family inet). Default "membrane". */
  table?: string;
  /** NFLOG group of drop logs. Default 1. */
  logGroup?: number;
  /**
   * How long (ms) the last applied table is trusted as the kernel's state
   * before an apply reads the table back again. Default 30 s; 0 = always read.
   */
  trustMs?: number;
}

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
  /** The last state the kernel accepted (realized), undefined before the first apply. */
  realized: DatapathState | undefined;
  private running = false;
  private readonly resyncMs: number;
  private lastApplied: CompiledTable | undefined;
  private lastRead = 0;
  private pending: { state: DatapathState; waiters: Waiter[] } | undefined;
  private readonly stopper = new AbortController();

  constructor(params: ReconcilerParams = {}) {
    this.netns = params.netns;
    this.table = params.table ?? "membrane";
    this.logGroup = params.logGroup ?? 1;
    this.resyncMs = params.trustMs ?? 30_000;
  }

  private get nsOpt(): { netns?: string; signal: AbortSignal } {
    const signal = this.stopper.signal;
    return this.netns === undefined ? { signal } : { netns: this.netns, signal };
  }

  /** Kills the `nft` running now (without waiting for it) and refuses every later apply. */
  stop(): void {
    this.stopper.abort();
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
    const compiled = compile(desired, { table: this.table, logGroup: this.logGroup });
    // Plan against what we applied last (the kernel accepted it whole), unless a
    // resync is due: reading a large table back costs far more than the change.
    // If the kernel drifted meanwhile, the transaction fails or the next resync
    // repairs it; a failure re-plans once against a fresh readback.
    const trusted =
      this.lastApplied && Date.now() - this.lastRead < this.resyncMs ? this.lastApplied : undefined;
    let p = trusted ? plan(compiled, asActual(trusted)) : await this.planFromKernel(compiled);
    try {
      if (p.ops > 0) await nftApply(p.script, this.nsOpt);
    } catch (e) {
      if (!trusted || this.stopper.signal.aborted) throw e;
      p = await this.planFromKernel(compiled);
      if (p.ops > 0) await nftApply(p.script, this.nsOpt);
    }
    this.lastApplied = compiled;
    this.realized = desired;
    return { changed: p.ops > 0, ops: p.ops, ms: Math.round((performance.now() - t0) * 10) / 10 };
  }

  private async planFromKernel(compiled: CompiledTable): Promise<Plan> {
    const doc = await nftListJson("inet", this.table, this.nsOpt);
    this.lastRead = Date.now();
    return plan(compiled, doc === undefined ? undefined : parseTable(doc));
  }

  /** Removes the table (endpoint teardown, tests). Enforcement stops: only for shutting a node down. */
  async deleteTable(): Promise<void> {
    await run(["nft", "delete", "table", "inet", this.table], {
      ...this.nsOpt,
      code: "NFT_APPLY_FAILED",
      what: `delete table inet ${this.table}`,
    });
    this.realized = undefined;
    this.lastApplied = undefined;
  }
}
