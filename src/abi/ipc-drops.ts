/**
 * What the agent dropped from one unprivileged process's IPC channel (the proxy's workers:
 * proxy/runtime/protocol.ts fromProxy; the gateway: gateway/from-gateway.ts), counted by reason.
 * A reason is a fixed word per check, never text the process sent. Each reason is logged the first
 * time only: a compromised process sending garbage in a loop must not flood the agent's log; the
 * counts keep going, and `membrane get status` (ipcDropped) and /metrics
 * (membrane_ipc_dropped_total) show them (agent/ipc-drops.ts).
 *
 *   a check fails --add(reason)--> count + 1 (logged when it is the first) --view()--> {reason: n}
 */
import type { Logger } from "pino";

export class IpcDrops<R extends string = string> {
  private readonly counts = new Map<R, number>();

  /** `sender`: the process as the log names it ("proxy", "gateway"). */
  constructor(
    private readonly sender: string,
    private readonly logger?: Pick<Logger, "warn">,
  ) {}

  add(why: R): void {
    const n = (this.counts.get(why) ?? 0) + 1;
    this.counts.set(why, n);
    if (n === 1)
      this.logger?.warn(
        { reason: why },
        `malformed message or event from the ${this.sender} process dropped (said once per reason)`,
      );
  }

  /** The counts so far, by reason (a reason never seen is absent). */
  view(): Readonly<Partial<Record<R, number>>> {
    return Object.fromEntries(this.counts) as Partial<Record<R, number>>;
  }
}
