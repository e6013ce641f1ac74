/**
 * The node's LB table in the kernel: the first apply (and any apply after a
 * failure) writes the table whole; every later one writes the element delta
 * from the state it last applied (lb-compile.ts), in one `nft` transaction.
 *
 *   LbTable.apply(LbState) --compileLb--> delta vs realized --nft -f--> kernel
 *                                         (realized changes only once the kernel took it)
 */
import { nftApply } from "./exec.js";
import { lbWireDelta } from "./lb-wire.js";
import { SetElemWriter } from "./nfnl/setelem.js";
import { compileLb, lbDelta, lbTableScript, type CompiledLb } from "./lb-compile.js";
import type { LbState } from "./lb-types.js";

export interface LbTableParams {
  /** The node's network namespace (the current one when absent). */
  netns?: string;
  /** Table name (family inet); default "membrane_lb". */
  table?: string;
}

export interface LbApplyResult {
  /** "full": the table was written whole; "delta": elements only; "none": nothing changed. */
  mode: "full" | "delta" | "none";
  ops: number;
  /** Milliseconds spent writing to the kernel (the rest is compiling and diffing in Node). */
  kernelMs: number;
  /** "nfnl": one nf_tables batch of elements; "nft": through the nft binary. */
  writer?: "nfnl" | "nft";
}

export class LbTable {
  readonly table: string;
  private realized: CompiledLb | undefined;
  private readonly writer: SetElemWriter;

  constructor(private readonly p: LbTableParams = {}) {
    this.table = p.table ?? "membrane_lb";
    this.writer = new SetElemWriter(p.netns);
  }

  private opts(): { netns?: string } {
    return this.p.netns !== undefined ? { netns: this.p.netns } : {};
  }

  /** Makes the kernel hold `state`; throws (and forgets what it held) when the kernel refuses. */
  async apply(state: LbState): Promise<LbApplyResult> {
    const now = compileLb(state, this.realized);
    const was = this.realized;
    if (!was) {
      this.realized = undefined;
      const t0 = performance.now();
      await nftApply(lbTableScript(this.table, now), this.opts());
      this.realized = now;
      let ops = 0;
      for (const m of now.elements.values()) ops += m.size;
      return { mode: "full", ops, kernelMs: performance.now() - t0, writer: "nft" };
    }
    const d = lbDelta(this.table, was, now);
    if (d.script === "") {
      this.realized = now;
      return { mode: "none", ops: 0, kernelMs: 0 };
    }
    const t0 = performance.now();
    let writer: "nfnl" | "nft" = "nft";
    try {
      // Elements only (no new or removed chain): one nf_tables batch, without nft.
      const sameChains =
        now.chains.size === was.chains.size && [...now.chains.keys()].every((c) => was.chains.has(c));
      const wire = sameChains ? lbWireDelta(was.elements, now.elements) : undefined;
      if (wire) {
        await this.writer.apply(this.table, wire);
        writer = "nfnl";
      } else await nftApply(d.script, this.opts());
    } catch (e) {
      // Unknown kernel state: the next apply writes the table whole.
      this.realized = undefined;
      throw e;
    }
    this.realized = now;
    return { mode: "delta", ops: d.ops, kernelMs: performance.now() - t0, writer };
  }

  /** Stops the element writer's process (the table stays). */
  stop(): void {
    this.writer.stop();
  }

  /** Removes the table (uninstall, tests). */
  async destroy(): Promise<void> {
    this.realized = undefined;
    this.writer.stop();
    await nftApply(`table inet ${this.table} {}\ndelete table inet ${this.table}\n`, this.opts());
  }
}
