/**
 * The event source's canary: bpftrace says its probes are "attached" before
 * the kernel runs its programs (it prints that, then loads and attaches; the
 * verifier alone can take seconds on a loaded host), so a start that trusts
 * that message loses the events of its first moments. The source's start
 * waits instead until it has seen an exec of its own:
 *
 *   attached --> spawn `true <nonce>` --(exec record with the nonce)--> seen: start resolves
 *                 (again every intervalMs)        never within timeoutMs --> start resolves, status "unseen"
 *
 * The canary's own records (fork, exec, exit of the pids it spawned) are not
 * passed on: they are the agent's plumbing, not the node's activity.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { ProcessRecord } from "./assemble.js";

export interface CanaryParams {
  /** A tiny binary that exits at once, whatever its arguments (`true`). */
  readonly binary?: string;
  /** Between two canaries while none was seen (ms). */
  readonly intervalMs?: number;
  /** Safety net: how long to wait for one to be seen (ms). */
  readonly timeoutMs?: number;
}

/** How long the pids of the canaries stay filtered once one was seen (their last records are through by then). */
const FORGET_MS = 5_000;
/** At most this many canary pids are remembered (a bound, whatever the timeout). */
const MAX_PIDS = 1024;

export class Canary {
  private readonly nonce = `membrane-canary-${randomBytes(8).toString("hex")}`;
  private readonly pids = new Set<number>();
  private seenAt: number | undefined;
  private onSeen: (() => void) | undefined;
  /** Canaries spawned. */
  spawned = 0;

  constructor(private readonly p: CanaryParams = {}) {}

  /** Whether a canary's exec has been seen (the programs run). */
  get seen(): boolean {
    return this.seenAt !== undefined;
  }

  /** True when `r` is the canary's own (the caller drops it); notes the first sighting. */
  filter(r: ProcessRecord): boolean {
    if (!this.pids.has(r.pid)) return false;
    if (r.kind === "exec" && r.argv[1] === this.nonce && this.seenAt === undefined) {
      this.seenAt = Date.now();
      this.onSeen?.();
      setTimeout(() => this.pids.clear(), FORGET_MS).unref();
    }
    return true;
  }

  /**
   * Spawns canaries until one is seen (true) or the safety net runs out
   * (false); `stopped` ends the wait early (false).
   */
  async wait(stopped: () => boolean): Promise<boolean> {
    const end = Date.now() + (this.p.timeoutMs ?? 120_000);
    const seen = new Promise<void>((r) => (this.onSeen = r));
    while (!this.seen && !stopped() && Date.now() < end) {
      await this.spawnOne();
      const tick = new Promise<void>((r) => setTimeout(r, this.p.intervalMs ?? 200).unref());
      await Promise.race([seen, tick]);
    }
    this.onSeen = undefined;
    return this.seen;
  }

  private spawnOne(): Promise<void> {
    return new Promise((resolve) => {
      const c = spawn(this.p.binary ?? "true", [this.nonce], { stdio: "ignore" });
      this.spawned++;
      if (c.pid !== undefined && this.pids.size < MAX_PIDS) this.pids.add(c.pid);
      c.once("error", () => resolve());
      c.once("exit", () => resolve());
    });
  }
}
