/**
 * Waits until this process (the benchmark, with the agent running in it) is
 * idle: under 5% of one CPU in two consecutive 1 s windows, and none of the
 * commands the agent runs (`nft`, `ip`, `sh`, ...) working as its descendant
 * (new, running or using CPU in the window; idle waiters and zombies do not count):
 * its background verification reads the whole table with `nft -j list table`
 * (~8 s of CPU at 1,000 endpoints) and checks adopted namespaces with `sh` and
 * `ip`, right after a start or restart. Called before every traffic window of
 * either condition, so that both are measured with the agent in the same
 * (idle) state; the long-lived helpers (node children, iperf3) do not count.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Commands the agent runs for a while (one of them running means it is busy). */
export const BUSY = new Set(["nft", "ip", "sh", "nsenter", "unshare", "conntrack", "sysctl"]);

/**
 * This process's descendants whose command is one of `comms`, with their state and CPU ticks.
 * Zombies are left out (a reaped-late child does no work).
 */
export function descendants(comms: ReadonlySet<string>): Map<number, { state: string; ticks: number }> {
  const parent = new Map<number, number>();
  const info = new Map<number, { name: string; state: string; ticks: number }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ')'.
      const close = stat.lastIndexOf(")");
      const f = stat.slice(close + 2).split(" ");
      parent.set(Number(d), Number(f[1]));
      info.set(Number(d), {
        name: stat.slice(stat.indexOf("(") + 1, close),
        state: f[0] ?? "",
        ticks: Number(f[11]) + Number(f[12]),
      });
    } catch {
      // gone meanwhile
    }
  }
  const mine = (pid: number): boolean => {
    for (let p = parent.get(pid), i = 0; p !== undefined && p > 1 && i < 64; p = parent.get(p), i++)
      if (p === process.pid) return true;
    return false;
  };
  const out = new Map<number, { state: string; ticks: number }>();
  for (const [pid, x] of info)
    if (comms.has(x.name) && x.state !== "Z" && mine(pid)) out.set(pid, { state: x.state, ticks: x.ticks });
  return out;
}

/**
 * Did one of the agent's commands work during the window: one that is new, running, or used CPU.
 * Processes that only wait (the endpoint pool's idle `ip -batch` in namespaces made ahead of time)
 * do not count.
 */
export function commandsWorked(
  before: ReadonlyMap<number, { ticks: number }>,
  after: ReadonlyMap<number, { state: string; ticks: number }>,
): boolean {
  for (const [pid, a] of after) {
    const b = before.get(pid);
    if (b === undefined || a.ticks !== b.ticks || a.state === "R" || a.state === "D") return true;
  }
  return false;
}

/** Milliseconds waited until idle (or `capMs`, a safety net: the window then runs anyway). */
export async function settle(capMs = 120_000): Promise<number> {
  const t0 = performance.now();
  let quiet = 0;
  while (quiet < 2 && performance.now() - t0 < capMs) {
    const c0 = process.cpuUsage();
    const d0 = descendants(BUSY);
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const c = process.cpuUsage(c0);
    const busy = (c.user + c.system) / 1000 / (performance.now() - w0);
    quiet = busy < 0.05 && !commandsWorked(d0, descendants(BUSY)) ? quiet + 1 : 0;
  }
  return Math.round(performance.now() - t0);
}
