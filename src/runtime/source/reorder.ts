/**
 * Whole records back in kernel time order. bpftrace reads one perf buffer per
 * CPU, and a task changes CPU at exec, so the exec of `ip netns exec` and the
 * exec of the command it runs (same pid), or an exec and its process's exit,
 * can arrive swapped. Records are held WINDOW_NS after their ktime (the same
 * monotonic clock as process.hrtime) and released sorted by it; one that
 * arrives later than that is released at once (counted as `late`).
 *
 *   push(record) --held until ktime + window--> flush() --> emit(records in ktime order)
 */
import type { ProcessRecord } from "./assemble.js";

export const WINDOW_NS = 50_000_000n;
/** Held at most; beyond, the oldest are released early. */
export const MAX_HELD = 65_536;

export class Reorder {
  private held: ProcessRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private released = 0n;
  late = 0;

  constructor(
    private readonly emit: (r: ProcessRecord) => void,
    private readonly now: () => bigint = () => process.hrtime.bigint(),
  ) {}

  push(r: ProcessRecord): void {
    if (r.ktime < this.released) {
      this.late++;
      this.emit(r);
      return;
    }
    this.held.push(r);
    if (this.held.length > MAX_HELD) this.flush(true);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush(false);
    }, 25);
  }

  /** Releases what is older than the window (everything when `all`). */
  flush(all: boolean): void {
    const cut = all ? BigInt(Number.MAX_SAFE_INTEGER) * 1_000_000n : this.now() - WINDOW_NS;
    this.held.sort((a, b) => (a.ktime < b.ktime ? -1 : a.ktime > b.ktime ? 1 : 0));
    let i = 0;
    while (i < this.held.length && (this.held[i] as ProcessRecord).ktime <= cut) i++;
    const out = this.held.slice(0, i);
    this.held = this.held.slice(i);
    for (const r of out) {
      if (r.ktime > this.released) this.released = r.ktime;
      this.emit(r);
    }
    if (this.held.length > 0)
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flush(false);
      }, 25);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush(true);
  }
}
