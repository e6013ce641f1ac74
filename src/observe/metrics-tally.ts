/**
 * Per-flow counting without prom-client's per-call label hashing: counts live
 * in nested maps, one level per label (keyed by the flow's own strings, no key
 * string built per flow), and reach the Counter when it is collected (at
 * scrape time).
 *
 *   handler --tally.inc([v1, v2, ...])--> nested Map --flush() at collect--> Counter.inc(labels, delta)
 */
import type { Counter } from "prom-client";

type Leaf = { labels: Record<string, string>; n: number; reported: number };
type Level = Map<string, unknown>;

export class Tally {
  private readonly root: Level = new Map();
  constructor(
    private readonly counter: Counter<string>,
    private readonly names: readonly string[],
  ) {}

  /** One event (or `by` events) with these label values, in label-name order. */
  inc(values: readonly string[], by = 1): void {
    let m = this.root;
    const last = this.names.length - 1;
    for (let i = 0; i < last; i++) {
      const key = values[i] ?? "";
      let next = m.get(key) as Level | undefined;
      if (next === undefined) m.set(key, (next = new Map()));
      m = next;
    }
    const key = values[last] ?? "";
    const e = m.get(key) as Leaf | undefined;
    if (e !== undefined) {
      e.n += by;
      return;
    }
    const labels: Record<string, string> = {};
    this.names.forEach((n, i) => (labels[n] = values[i] ?? ""));
    m.set(key, { labels, n: by, reported: 0 });
  }

  flush(): void {
    const walk = (m: Level, depth: number): void => {
      for (const v of m.values()) {
        if (depth > 0) walk(v as Level, depth - 1);
        else {
          const e = v as Leaf;
          if (e.n > e.reported) this.counter.inc(e.labels, e.n - e.reported);
          e.reported = e.n;
        }
      }
    };
    walk(this.root, this.names.length - 1);
  }
}
