/**
 * What the agent dropped as malformed from its unprivileged processes (abi/ipc-drops.ts), shown
 * where an operator looks:
 *
 *   ProxyWorkers.dropped, GatewaysController.dropped
 *     --ipcDropsStatus--> GET /v1/status `ipcDropped: {proxy: {reason: n}, gateway: {...}}`
 *                         (`membrane get status`: one line per process)
 *     --registerIpcDrops--> /metrics membrane_ipc_dropped_total{process, reason}
 *
 * A count that grows means the process sent what it never sends when it works as written: a bug
 * or a compromised process, worth an alert. The processes' objects hold the counts; the metric
 * reads them at each scrape (as the flow tallies flush at collect time), so that /metrics and
 * status cannot disagree. The counts live as long as the agent (the objects survive a process
 * restart), so the counter only grows.
 */
import { Counter, type Registry } from "prom-client";

export type IpcDropCounts = Readonly<Partial<Record<string, number>>>;

/** The processes that run (undefined: off, or not started yet) and their counts. */
export type IpcDropSources = Readonly<Record<"proxy" | "gateway", () => IpcDropCounts | undefined>>;

/** `ipcDropped` of the agent's status: one entry per process that runs; absent when none does. */
export function ipcDropsStatus(s: IpcDropSources): { ipcDropped?: Record<string, IpcDropCounts> } {
  const out: Record<string, IpcDropCounts> = {};
  for (const [process, counts] of Object.entries(s)) {
    const c = counts();
    if (c !== undefined) out[process] = c;
  }
  return Object.keys(out).length > 0 ? { ipcDropped: out } : {};
}

/** membrane_ipc_dropped_total on `registry`, brought up to the sources' counts at each scrape. */
export function registerIpcDrops(registry: Registry, s: IpcDropSources): void {
  /** What the counter holds already, by "process reason". */
  const counted = new Map<string, number>();
  new Counter({
    name: "membrane_ipc_dropped_total",
    help: "Messages and events from the proxy and gateway processes dropped as malformed, by process and reason",
    labelNames: ["process", "reason"],
    registers: [registry],
    collect() {
      for (const [process, counts] of Object.entries(s))
        for (const [reason, n = 0] of Object.entries(counts() ?? {})) {
          const key = `${process} ${reason}`;
          const more = n - (counted.get(key) ?? 0);
          if (more <= 0) continue;
          this.inc({ process, reason }, more);
          counted.set(key, n);
        }
    },
  });
}
