/**
 * The agent's one-at-a-time work queue: every change runs alone, in arrival order.
 *
 *   run(f, signal) --queued--> [turn comes] --signal aborted?--> rejected, f never runs
 *                                          --stopping?-------> rejected, f never runs
 *                                          --else------------> f()
 *
 * A request whose client has gone (its socket closed: `signal` aborted)
 * before its turn is dropped, so nothing is carried out later without the
 * user knowing; work that has started completes. stop() refuses new and
 * queued work and resolves once the running work has ended. idle() resolves
 * when nothing is queued or running; quiet() when nothing has been for a
 * moment (background work waits for it: yieldToWork()).
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";

/** How long the queue must have been idle before background work goes on (quiet()). */
export const QUIET_MS = 50;
/** The longest background work waits for a quiet queue before it goes on anyway (yieldToWork()). */
export const YIELD_MAX_MS = 2000;

export class WorkQueue {
  private chain: Promise<unknown> = Promise.resolve();
  private stopping = false;
  /** Work queued or running. */
  private count = 0;
  private idlers: (() => void)[] = [];
  /** When the queue last became idle (performance.now()). */
  private idleSince = -Infinity;

  constructor(private readonly logger: Logger) {}

  /** Runs `f` after everything queued before it; `what` names it in messages ("apply policies"). */
  run<T>(f: () => Promise<T>, signal?: AbortSignal, what = "run the request"): Promise<T> {
    const onAbort = (): void =>
      this.logger.info({ what }, "client went away before its request ran; the request is dropped");
    signal?.addEventListener("abort", onAbort, { once: true });
    const turn = (): Promise<T> => {
      signal?.removeEventListener("abort", onAbort);
      if (this.stopping) {
        return Promise.reject(new MembraneError("API_FAILED", `Cannot ${what}: the agent is stopping`));
      }
      if (signal?.aborted) {
        return Promise.reject(
          new MembraneError("API_FAILED", `Cannot ${what}: the client went away before it started`),
        );
      }
      return f();
    };
    this.count++;
    const next = this.chain.then(turn, turn);
    const settled = (): void => {
      if (--this.count > 0) return;
      this.idleSince = performance.now();
      const w = this.idlers;
      this.idlers = [];
      for (const f of w) f();
    };
    this.chain = next.then(settled, settled);
    return next;
  }

  /** True while work is queued or running. */
  get busy(): boolean {
    return this.count > 0;
  }

  /** Resolves when nothing is queued or running (now, if so). */
  idle(): Promise<void> {
    return this.count === 0 ? Promise.resolve() : new Promise((r) => this.idlers.push(r));
  }

  /**
   * Resolves once nothing has been queued or running for `ms` (now, if so): a
   * burst of requests (a client applying file after file) is not interleaved
   * with background work between two of them.
   */
  async quiet(ms = QUIET_MS): Promise<void> {
    for (;;) {
      await this.idle();
      if (this.count > 0) continue;
      const left = this.idleSince + ms - performance.now();
      if (left <= 0) return;
      await new Promise((r) => setTimeout(r, left)); // at most `ms`: not unref'd
    }
  }

  /**
   * For background work between two of its slices: one turn of the event loop, then
   * until the queue is quiet, but never longer than `maxMs` (an agent that is never
   * idle still gets its background work done, slowly).
   */
  async yieldToWork(maxMs = YIELD_MAX_MS): Promise<void> {
    await new Promise((r) => setImmediate(r));
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (timer = setTimeout(r, maxMs).unref()));
    await Promise.race([this.quiet(), bound]);
    clearTimeout(timer);
  }

  /** Refuses queued and new work; resolves when the work running now has ended. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.chain.catch(() => undefined);
  }
}
