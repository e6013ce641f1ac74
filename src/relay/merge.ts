/**
 * Merges the flow streams of many nodes into one in time order, within a
 * window: a record is held until it is `windowMs` old (by the relay's
 * clock), so that an older record from a slower node can still overtake it.
 *
 *   node A ─┐                       ┌─ held while  now - time < windowMs
 *   node B ─┼─ push ─▶ min-heap ────┤  emitted    when older, or when the heap is full (oldest first)
 *   node C ─┘   (by time, then      └─ late: older than the last emitted record -> emitted at once, counted
 *                arrival)
 *
 * Nothing is dropped here: a full heap emits its oldest record early (counted
 * as `overflow`), a record that arrives after a newer one was emitted is
 * passed through out of order (counted as `late`). Pure: the caller drives
 * the clock through tick(now).
 */

export interface Timed {
  readonly timeMs: number;
}

export interface MergeStats {
  /** Records pushed. */
  readonly pushed: number;
  /** Records emitted (in order or not). */
  readonly emitted: number;
  /** Records held now. */
  readonly buffered: number;
  /** Emitted out of order: older than a record already emitted (beyond the window), or without a time. */
  readonly late: number;
  /** Emitted before their window passed because the heap was full. */
  readonly overflow: number;
}

export interface MergerParams<T extends Timed> {
  readonly windowMs: number;
  /** Most records held at once (the bound of the heap). */
  readonly maxBuffered: number;
  readonly emit: (item: T) => void;
}

interface Entry<T> {
  readonly item: T;
  readonly seq: number;
}

export class TimeMerger<T extends Timed> {
  private readonly heap: Entry<T>[] = [];
  private seq = 0;
  private lastEmittedMs = -Infinity;
  private pushed = 0;
  private emitted = 0;
  private late = 0;
  private overflow = 0;

  constructor(private readonly p: MergerParams<T>) {
    if (!(p.windowMs >= 0) || !(p.maxBuffered >= 1))
      throw new RangeError("TimeMerger needs windowMs >= 0 and maxBuffered >= 1");
  }

  push(item: T): void {
    this.pushed++;
    if (!Number.isFinite(item.timeMs) || item.timeMs < this.lastEmittedMs) {
      this.late++;
      this.out(item);
      return;
    }
    this.heapPush({ item, seq: this.seq++ });
    if (this.heap.length > this.p.maxBuffered) {
      this.overflow++;
      this.emitMin();
    }
  }

  /** Emits every record at least windowMs older than `nowMs`, oldest first. */
  tick(nowMs: number): void {
    const limit = nowMs - this.p.windowMs;
    while (this.heap.length > 0 && (this.heap[0] as Entry<T>).item.timeMs <= limit) this.emitMin();
  }

  /** Emits everything held, oldest first (the end of every stream). */
  flush(): void {
    while (this.heap.length > 0) this.emitMin();
  }

  stats(): MergeStats {
    return {
      pushed: this.pushed,
      emitted: this.emitted,
      buffered: this.heap.length,
      late: this.late,
      overflow: this.overflow,
    };
  }

  private out(item: T): void {
    this.emitted++;
    this.p.emit(item);
  }

  private emitMin(): void {
    const top = this.heapPop();
    if (top === undefined) return;
    if (top.item.timeMs > this.lastEmittedMs) this.lastEmittedMs = top.item.timeMs;
    this.out(top.item);
  }

  private less(a: Entry<T>, b: Entry<T>): boolean {
    return a.item.timeMs < b.item.timeMs || (a.item.timeMs === b.item.timeMs && a.seq < b.seq);
  }

  private heapPush(e: Entry<T>): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(h[i] as Entry<T>, h[parent] as Entry<T>)) break;
      [h[i], h[parent]] = [h[parent] as Entry<T>, h[i] as Entry<T>];
      i = parent;
    }
  }

  private heapPop(): Entry<T> | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.less(h[l] as Entry<T>, h[m] as Entry<T>)) m = l;
      if (r < h.length && this.less(h[r] as Entry<T>, h[m] as Entry<T>)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m] as Entry<T>, h[i] as Entry<T>];
      i = m;
    }
    return top;
  }
}
