/**
 * Many timeouts of one length on one timer: the proxies' per-request
 * deadlines without a `setTimeout` per request.
 *
 *   add(fire) --> entry appended (due = now + ms) --> one timer, armed for the oldest live entry
 *   cancel()  --> entry marked dead (skipped when the timer reaches it)
 *
 * Every entry has the same length, so due times only grow and the queue is
 * a FIFO: adding and cancelling are O(1), and the timer fires about once per
 * `ms` in a busy proxy (when it fires, the entries it passes are mostly
 * answered and cancelled already). A deadline fires at its due time or a
 * little later (never earlier), as a timer would.
 */
import { performance } from "node:perf_hooks";

export interface Deadline {
  /** Idempotent; after it, the deadline never fires. */
  cancel(): void;
}

class Entry implements Deadline {
  constructor(
    readonly due: number,
    public fire: (() => void) | undefined,
  ) {}

  cancel(): void {
    this.fire = undefined;
  }
}

/** Compact the array once this many dead slots sit before the head. */
const COMPACT_AT = 1024;

export class TimeoutQueue {
  private queue: Entry[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;
  private timerDue = Infinity;
  private stopped = false;

  /** `onError` sees what a callback threw (the sweep goes on with the next one). */
  constructor(
    readonly ms: number,
    private readonly onError: (e: unknown) => void = () => undefined,
  ) {
    if (!(ms >= 0) || !Number.isFinite(ms))
      throw new RangeError(`timeout must be a finite number >= 0, got ${ms}`);
  }

  /** Calls `fire` once, `ms` from now, unless cancelled first. */
  add(fire: () => void): Deadline {
    if (this.stopped) return new Entry(0, undefined);
    const e = new Entry(performance.now() + this.ms, fire);
    this.queue.push(e);
    if (this.timer === undefined) this.arm(e.due);
    return e;
  }

  /** Live (not fired, not cancelled) entries: for tests and stats. */
  get pending(): number {
    let n = 0;
    for (let i = this.head; i < this.queue.length; i++) if (this.queue[i]?.fire) n++;
    return n;
  }

  /** Drops every entry without firing it; `add` afterwards returns inert deadlines. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.head = 0;
  }

  private arm(due: number): void {
    this.timerDue = due;
    this.timer = setTimeout(() => this.sweep(), Math.max(0, due - performance.now()) + 1);
    this.timer.unref();
  }

  private sweep(): void {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = performance.now();
    const q = this.queue;
    while (this.head < q.length) {
      const e = q[this.head] as Entry;
      if (e.fire && e.due > now) break;
      this.head++;
      const fire = e.fire;
      e.fire = undefined;
      if (!fire) continue;
      try {
        fire();
      } catch (err) {
        this.onError(err); // one failing callback must not stop the others from firing
      }
    }
    if (this.head >= COMPACT_AT && this.head * 2 >= q.length) {
      this.queue = q.slice(this.head);
      this.head = 0;
    }
    const next = this.queue[this.head];
    if (next && !this.stopped && next.due < this.timerDue) this.arm(next.due);
  }
}
