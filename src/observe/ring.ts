/**
 * The agent's flow ring: a bounded buffer of the most recent records with
 * sequence numbers, read by last N / since / until, or followed live.
 *
 *   push(flow | lost) --> [seq 1041 .. seq 1040+capacity]  --read({number, since, until, filter})--> FlowRecord[]
 *                                                         \--follow({...})--> AsyncIterable<FlowRecord>
 *
 * The ring never blocks a writer: when full, the oldest record is
 * overwritten. A follower that reads slower than the writer is lapped; it
 * then gets a `{lost_events: {source: "HUBBLE_RING_BUFFER", num_events_lost}}`
 * record in its stream saying how many records it missed, and continues from
 * the oldest one still held. Losses before the ring (the kernel's NFLOG
 * queue) come in as lost_events records through pushLost().
 *
 * A stream resumed from a time (the relay reopening a node's stream after a
 * break: follow({since, resumed: true})) first gets a lost_events record for
 * the records at or after `since` that were overwritten meanwhile: the ring
 * keeps the time of what it overwrote (a checkpoint per millisecond, bounded),
 * so a gap is counted, never silent. It may count a few records the reader
 * already had (those sharing the last millisecond it saw); it never counts
 * fewer than were lost.
 */
import { isFlowRecord, type Flow, type FlowRecord, type LostEventSource } from "./flow.js";

export interface FlowRingParams {
  /** Records held (at least 1). */
  capacity: number;
  nodeName?: string;
}

export interface ReadOptions {
  /** Only the last N matching records. */
  number?: number;
  /** ms since the epoch, inclusive. */
  since?: number;
  /** ms since the epoch, inclusive. */
  until?: number;
  /** Flow predicate; lost_events records always pass. */
  filter?: (f: Flow) => boolean;
}

export interface FollowOptions extends ReadOptions {
  /** Ends the iteration. */
  signal?: AbortSignal;
  /** A reader resuming at `since`: what was overwritten at or after it comes first as lost_events. */
  resumed?: boolean;
}

/** Checkpoints kept of overwritten records' times: one per distinct millisecond (about a minute at full rate). */
const CHECKPOINTS = 65_536;

export interface RingStats {
  capacity: number;
  size: number;
  /** Records ever pushed (the last seq). */
  written: number;
  /** Records overwritten because the ring was full. */
  overwritten: number;
  /** Events lost before the ring, as reported through pushLost(). */
  lostUpstream: number;
  /** Records followers missed because they were lapped (summed over followers). */
  lostByFollowers: number;
}

/**
 * Slots are three parallel arrays (seq, time, record) written in place: a slot object per
 * push was garbage the collector copied for as long as the ring held it.
 */
export class FlowRing {
  /** seq of the record in each slot (0: empty). */
  private readonly slotSeq: Float64Array;
  private readonly slotMs: Float64Array;
  private readonly slotRec: (FlowRecord | undefined)[];
  private readonly capacity: number;
  private readonly nodeName: string | undefined;
  private seq = 0;
  private lostUpstream = 0;
  private lostByFollowers = 0;
  private waiters: (() => void)[] = [];
  /** Overwritten records: [ms, first seq with that ms], a ring of CHECKPOINTS (see lostSince). */
  private readonly cpMs = new Float64Array(CHECKPOINTS);
  private readonly cpSeq = new Float64Array(CHECKPOINTS);
  private cpCount = 0;

  constructor(params: FlowRingParams) {
    if (!Number.isInteger(params.capacity) || params.capacity < 1)
      throw new RangeError(`FlowRing capacity must be a positive integer, got ${params.capacity}`);
    this.capacity = params.capacity;
    this.slotSeq = new Float64Array(params.capacity);
    this.slotMs = new Float64Array(params.capacity);
    this.slotRec = new Array<FlowRecord | undefined>(params.capacity).fill(undefined);
    this.nodeName = params.nodeName;
  }

  private push(rec: FlowRecord, ms: number): void {
    const seq = ++this.seq;
    const i = seq % this.capacity;
    const oldSeq = this.slotSeq[i] as number;
    const oldMs = this.slotMs[i] as number;
    if (oldSeq !== 0 && (this.cpCount === 0 || this.cpMs[(this.cpCount - 1) % CHECKPOINTS] !== oldMs)) {
      this.cpMs[this.cpCount % CHECKPOINTS] = oldMs;
      this.cpSeq[this.cpCount % CHECKPOINTS] = oldSeq;
      this.cpCount++;
    }
    this.slotSeq[i] = seq;
    this.slotMs[i] = ms;
    this.slotRec[i] = rec;
    if (this.waiters.length > 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  /** Appends a record as it is (replaying saved records). */
  pushRecord(rec: FlowRecord, ms: number): void {
    this.push(rec, ms);
  }

  /** Appends a flow; `ms` is its time (parsed from flow.time when absent). */
  pushFlow(flow: Flow, ms: number = Date.parse(flow.time)): void {
    const node = flow.node_name ?? this.nodeName;
    this.push(
      node === undefined ? { flow, time: flow.time } : { flow, node_name: node, time: flow.time },
      ms,
    );
  }

  /** Records that `n` events were lost before reaching the ring. */
  pushLost(source: LostEventSource, n: number, ms: number = Date.now()): void {
    if (n <= 0) return;
    this.lostUpstream += n;
    const time = new Date(ms).toISOString();
    const lost = { source, num_events_lost: n };
    this.push(
      this.nodeName === undefined
        ? { lost_events: lost, time }
        : { lost_events: lost, node_name: this.nodeName, time },
      ms,
    );
  }

  stats(): RingStats {
    return {
      capacity: this.capacity,
      size: Math.min(this.seq, this.capacity),
      written: this.seq,
      overwritten: Math.max(0, this.seq - this.capacity),
      lostUpstream: this.lostUpstream,
      lostByFollowers: this.lostByFollowers,
    };
  }

  /**
   * How many records with a time at or after `ms` were overwritten (every record, whatever a
   * reader's filter: as a lapped follower's count). Past the checkpoints kept: every overwritten one.
   */
  lostSince(ms: number): number {
    const oldest = this.oldest();
    const first = Math.max(0, this.cpCount - CHECKPOINTS);
    if (this.cpCount === 0) return 0;
    // Times are pushed in (nearly) increasing order: the first checkpoint at or after ms, by bisection.
    let lo = first;
    let hi = this.cpCount;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.cpMs[mid % CHECKPOINTS] as number) < ms) lo = mid + 1;
      else hi = mid;
    }
    if (lo === this.cpCount) return 0;
    const fromSeq = lo === first && first > 0 ? 1 : (this.cpSeq[lo % CHECKPOINTS] as number);
    return Math.max(0, oldest - fromSeq);
  }

  /** Oldest seq still held. */
  private oldest(): number {
    return Math.max(1, this.seq - this.capacity + 1);
  }

  /** The record of seq `q` when the ring still holds it and it matches `o`. */
  private matching(q: number, o: ReadOptions): FlowRecord | undefined {
    const i = q % this.capacity;
    const rec = this.slotRec[i];
    if (rec === undefined || this.slotSeq[i] !== q) return undefined;
    const ms = this.slotMs[i] as number;
    if (o.since !== undefined && ms < o.since) return undefined;
    if (o.until !== undefined && ms > o.until) return undefined;
    return o.filter === undefined || !isFlowRecord(rec) || o.filter(rec.flow) ? rec : undefined;
  }

  /** The held records matching `o`, oldest first; with `number`, only the last N of them. */
  read(o: ReadOptions = {}): FlowRecord[] {
    return this.backlog(o);
  }

  private backlog(o: ReadOptions): FlowRecord[] {
    const out: FlowRecord[] = [];
    const want = o.number ?? Infinity;
    for (let q = this.seq; q >= this.oldest() && out.length < want; q--) {
      const rec = this.matching(q, o);
      if (rec !== undefined) out.push(rec);
    }
    return out.reverse();
  }

  /**
   * The backlog (as read(); with neither number nor since it is empty, as
   * `hubble observe --follow`), then every new matching record as it comes.
   */
  async *follow(o: FollowOptions = {}): AsyncGenerator<FlowRecord> {
    const { number: _n, until: _u, signal, resumed, ...live } = o;
    // Counted with the backlog in the same turn: nothing is overwritten between the two.
    const gap = resumed === true && o.since !== undefined ? this.lostSince(o.since) : 0;
    const first =
      o.number === undefined && o.since === undefined
        ? []
        : this.backlog({ ...live, ...(_n === undefined ? {} : { number: _n }) });
    // Live records start after the backlog as it was taken: what is pushed while the consumer
    // reads the backlog follows it (or is counted lost if overwritten meanwhile), never skipped.
    let next = this.seq + 1;
    if (gap > 0) {
      this.lostByFollowers += gap;
      const lost = { source: "HUBBLE_RING_BUFFER" as const, num_events_lost: gap };
      const time = new Date(o.since as number).toISOString();
      yield this.nodeName === undefined
        ? { lost_events: lost, time }
        : { lost_events: lost, node_name: this.nodeName, time };
    }
    for (const rec of first) yield rec;
    let wake: (() => void) | undefined;
    const onAbort = (): void => wake?.();
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      while (signal?.aborted !== true) {
        if (next > this.seq) {
          await new Promise<void>((resolve) => {
            wake = resolve;
            this.waiters.push(resolve);
          });
          continue;
        }
        const oldest = this.oldest();
        if (next < oldest) {
          const missed = oldest - next;
          this.lostByFollowers += missed;
          next = oldest;
          const time = new Date().toISOString();
          const lost = { source: "HUBBLE_RING_BUFFER" as const, num_events_lost: missed };
          yield this.nodeName === undefined
            ? { lost_events: lost, time }
            : { lost_events: lost, node_name: this.nodeName, time };
          continue;
        }
        const rec = this.matching(next, live);
        next++;
        if (rec !== undefined) yield rec;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }
}
