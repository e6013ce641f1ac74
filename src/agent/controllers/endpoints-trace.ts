/**
 * Per-phase timing of an endpoint create, published on a diagnostics
 * channel (free when nobody listens): the scale bench subscribes and prints
 * a histogram per phase; an operator can subscribe the same way.
 *
 *   create ──mark("ipam")──mark("enforce")──...──end()──▶ channel "membrane:endpoint-create"
 *                                                           {phases: {ipam: ms, ...}, totalMs}
 *
 * A phase's time is from the previous mark (or the start) to its own; phases that run side by side
 * are timed with `since` from their common start.
 */
import { channel } from "node:diagnostics_channel";

export const CREATE_TRACE_CHANNEL = "membrane:endpoint-create";
const ch = channel(CREATE_TRACE_CHANNEL);

export interface CreateTrace {
  readonly phases: Readonly<Record<string, number>>;
  readonly totalMs: number;
}

/** Marks of one create; a no-op object when nobody subscribes. */
export class CreatePhases {
  private readonly on = ch.hasSubscribers;
  private readonly t0 = performance.now();
  private last = this.t0;
  private readonly phases: Record<string, number> = {};

  /** The time since the previous mark, as phase `name`. */
  mark(name: string): void {
    if (!this.on) return;
    const t = performance.now();
    this.phases[name] = t - this.last;
    this.last = t;
  }

  /** Resolves with `p`, recording as phase `name` the time from now to its settling. */
  time<T>(name: string, p: Promise<T>): Promise<T> {
    if (!this.on) return p;
    const t = performance.now();
    const done = (): void => void (this.phases[name] = performance.now() - t);
    p.then(done, done);
    return p;
  }

  /** Publishes the phases of a create that succeeded. */
  end(): void {
    if (!this.on) return;
    this.mark("answer");
    const trace: CreateTrace = { phases: this.phases, totalMs: performance.now() - this.t0 };
    ch.publish(trace);
  }
}
