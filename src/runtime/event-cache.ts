/**
 * Policy events held until their process is known, as Tetragon's eventcache
 * (pkg/eventcache) does: a TracingPolicy event reaches the agent through the
 * sensor's own loader, while the fork and exec records of its process come
 * through the process event source's; a new process's first events can come
 * first. Such an event is held and retried as process records are read,
 * instead of going out without `exec_id`.
 *
 *   event of a known pid --> release(event, true) at once
 *   event of an unknown pid --hold--> held (arrival order)
 *        records read --retry--> ready(pid, ktime)? --> release(event, true)   (exec_id, pod, parent)
 *        older than maxAgeMs, or the oldest beyond maxEvents --> release(event, false)
 *                                                                (without process info; counted by the caller)
 *
 * Bounded in size and age, so a pid the cache never learns (its records lost,
 * a process started before the agent that the /proc scan missed) costs one
 * slot for at most maxAgeMs. Events of one pid go out in their order: an event
 * of a pid that already has held events is held behind them.
 */

export const EVENT_CACHE_MAX = 4096;
export const EVENT_CACHE_AGE_MS = 1000;

interface Held<E> {
  readonly pid: number;
  readonly ktime: bigint;
  readonly since: number;
  readonly event: E;
}

export interface EventCacheParams<E> {
  /** Whether the pid's process at `ktime` is known when its event comes (it then goes out at once). */
  readonly known: (pid: number, ktime: bigint) => boolean;
  /**
   * Whether a held event can go out with its process now (checked on every retry): its pid is
   * known and the process records were read past the event's time (an exec between the fork
   * read first and the event names the process, not its fork).
   */
  readonly ready: (pid: number, ktime: bigint) => boolean;
  /** The event goes out: with its process (`found`), or without it after its time ran out. */
  readonly release: (event: E, found: boolean) => void;
  readonly maxEvents?: number;
  readonly maxAgeMs?: number;
  /** Milliseconds (tests pass their own clock). */
  readonly now?: () => number;
}

export class EventCache<E> {
  private readonly held = new Map<number, Held<E>>();
  /** Held events per pid (an event of such a pid waits behind them). */
  private readonly pids = new Map<number, number>();
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  private readonly maxEvents: number;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  /** Events held since the start (Tetragon's tetragon_event_cache_accesses_total). */
  accesses = 0;
  /** Events released without their process (size or age bound). */
  missed = 0;

  constructor(private readonly p: EventCacheParams<E>) {
    this.maxEvents = p.maxEvents ?? EVENT_CACHE_MAX;
    this.maxAgeMs = p.maxAgeMs ?? EVENT_CACHE_AGE_MS;
    this.now = p.now ?? Date.now;
  }

  get size(): number {
    return this.held.size;
  }

  /** The event goes out now when its process is known (and none of its pid is held), else it is held. */
  offer(pid: number, ktime: bigint, event: E): void {
    if (!this.pids.has(pid) && this.p.known(pid, ktime)) return this.p.release(event, true);
    this.accesses++;
    if (this.held.size >= this.maxEvents) {
      const [id, oldest] = this.held.entries().next().value ?? [];
      if (id !== undefined && oldest) this.out(id, oldest, false);
    }
    this.held.set(this.seq++, { pid, ktime, since: this.now(), event });
    this.pids.set(pid, (this.pids.get(pid) ?? 0) + 1);
    this.arm();
  }

  /** A retry within a quarter of the age bound, so that expired events go out even when no record comes. */
  private arm(): void {
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.retry();
    }, this.maxAgeMs / 4);
    this.timer.unref();
  }

  /** After process records were read: ready events go out (in order per pid), expired ones without their process. */
  retry(): void {
    if (this.held.size === 0) return;
    const expired = this.now() - this.maxAgeMs;
    /** Pids with an event still waiting: their later events wait too. */
    const waiting = new Set<number>();
    for (const [id, h] of this.held) {
      if (waiting.has(h.pid)) continue;
      if (this.p.ready(h.pid, h.ktime)) this.out(id, h, true);
      else if (h.since <= expired) this.out(id, h, false);
      else waiting.add(h.pid);
    }
    if (this.held.size > 0) this.arm();
  }

  /** Everything held goes out (stop): with its process when known by now. */
  drain(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    for (const [id, h] of this.held) this.out(id, h, this.p.ready(h.pid, h.ktime));
  }

  private out(id: number, h: Held<E>, found: boolean): void {
    this.held.delete(id);
    const n = (this.pids.get(h.pid) ?? 1) - 1;
    if (n > 0) this.pids.set(h.pid, n);
    else this.pids.delete(h.pid);
    if (!found) this.missed++;
    this.p.release(h.event, found);
  }
}
