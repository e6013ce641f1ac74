/**
 * Waits until this process (the benchmark, with the agent running in it) is
 * idle: under 5% of one CPU in two consecutive 1 s windows, and none of the
 * commands the agent runs (`nft`, `ip`, `sh`, ...) running as its descendant:
 * its background verification reads the whole table with `nft -j list table`
 * (~8 s of CPU at 1,000 endpoints) and checks adopted namespaces with `sh` and
 * `ip`, right after a start or restart. Called before every traffic window of
 * either condition, so that both are measured with the agent in the same
 * (idle) state; the long-lived helpers (node children, iperf3) do not count.
 */
import { readdirSync, readFileSync } from "node:fs";

/** Commands the agent runs for a while (one of them running means it is busy). */
const BUSY = new Set(["nft", "ip", "sh", "nsenter", "unshare", "conntrack", "sysctl"]);

/** Pids of this process's descendants whose command is one of `comms`. */
function descendants(comms: ReadonlySet<string>): number[] {
  const parent = new Map<number, number>();
  const name = new Map<number, string>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split at the last ')'.
      const close = stat.lastIndexOf(")");
      const ppid = Number(stat.slice(close + 2).split(" ")[1]);
      parent.set(Number(d), ppid);
      name.set(Number(d), stat.slice(stat.indexOf("(") + 1, close));
    } catch {
      // gone meanwhile
    }
  }
  const mine = (pid: number): boolean => {
    for (let p = parent.get(pid), i = 0; p !== undefined && p > 1 && i < 64; p = parent.get(p), i++)
      if (p === process.pid) return true;
    return false;
  };
  return [...name].filter(([pid, n]) => comms.has(n) && mine(pid)).map(([pid]) => pid);
}

/** Milliseconds waited until idle (or `capMs`, a safety net: the window then runs anyway). */
export async function settle(capMs = 120_000): Promise<number> {
  const t0 = performance.now();
  let quiet = 0;
  while (quiet < 2 && performance.now() - t0 < capMs) {
    const c0 = process.cpuUsage();
    const w0 = performance.now();
    await new Promise((r) => setTimeout(r, 1000));
    const c = process.cpuUsage(c0);
    const busy = (c.user + c.system) / 1000 / (performance.now() - w0);
    quiet = busy < 0.05 && descendants(BUSY).length === 0 ? quiet + 1 : 0;
  }
  return Math.round(performance.now() - t0);
}
