/**
 * CPU time of the agent's helper processes, for the scale bench's figures
 * (scale.ts): the machine may be shared, and CPU time is steadier than the
 * wall clock there. The nfnl writer does its nf_tables work inside `sendmsg`,
 * so its system time is the kernel's cost of a batch.
 */
import { readdirSync, readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { CREATE_TRACE_CHANNEL, type CreateTrace } from "../src/agent/controllers/endpoints-trace.js";
import { pct, r1 } from "./traffic.js";

export /** CPU time (ms, 10 ms ticks) of the nfnl writer processes (membrane-nfnl, or nfnl/child.js) below `root`. */
function writerCpuMs(root: number): { user: number; system: number } {
  const parent = new Map<number, number>();
  const ticks = new Map<number, [number, number]>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "latin1");
      const f = st.slice(st.lastIndexOf(")") + 2).split(" ");
      parent.set(Number(d), Number(f[1]));
      const cmd = readFileSync(`/proc/${d}/cmdline`, "latin1");
      if (cmd.includes("nfnl/child") || cmd.includes("membrane-nfnl"))
        ticks.set(Number(d), [Number(f[11]), Number(f[12])]);
    } catch {
      // Gone meanwhile.
    }
  }
  let user = 0;
  let system = 0;
  for (const [pid, [u, s]] of ticks) {
    let p: number | undefined = pid;
    while (p !== undefined && p > 1 && p !== root) p = parent.get(p);
    if (p !== root) continue;
    user += u * 10;
    system += s * 10;
  }
  return { user, system };
}

/**
 * CPU time (ms, nanosecond counter) of this process's main thread alone: the agent's event
 * loop, without its worker threads (the background check's reader) that process.cpuUsage() adds.
 */
export function mainThreadCpuMs(): number {
  try {
    const f = readFileSync(`/proc/self/task/${process.pid}/schedstat`, "latin1").split(" ");
    return Number(f[0]) / 1e6;
  } catch {
    return NaN;
  }
}

/**
 * Runs `f` while sampling the event loop's delay (resolution 1 ms): what blocked the
 * agent's loop during a figure (a blocked loop delays every change behind it).
 */
export async function withLoopDelay<T>(
  f: () => Promise<T>,
): Promise<{ result: T; loopDelay: object; cpuMs: number; mainActiveMs: number }> {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  // CPU of this process (all its threads; not the nft and writer processes), and the time the
  // main thread's loop was busy: less noisy than latencies on a shared machine.
  const cpu0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  try {
    const result = await f();
    h.disable();
    const cpu = process.cpuUsage(cpu0);
    const ms = (ns: number): number => r1(ns / 1e6);
    return {
      result,
      loopDelay: {
        p50Ms: ms(h.percentile(50)),
        p99Ms: ms(h.percentile(99)),
        maxMs: ms(h.max),
        samples: h.count,
      },
      cpuMs: Math.round((cpu.user + cpu.system) / 1000),
      mainActiveMs: Math.round(performance.eventLoopUtilization(elu0).active),
    };
  } finally {
    h.disable();
  }
}

/** The agent's per-phase times of each endpoint create (controllers/endpoints-trace.ts), while subscribed. */
export function createPhases(): {
  stop: () => void;
  p50: () => Record<string, number>;
  max: () => Record<string, number>;
  /** The phases of each of the first `n` creates, in order (the tail after a restart is there). */
  first: (n: number) => Record<string, number>[];
} {
  const seen = new Map<string, number[]>();
  const each: Record<string, number>[] = [];
  const on = (m: unknown): void => {
    const t = m as CreateTrace;
    if (each.length < 100) each.push({ ...Object.fromEntries(Object.entries(t.phases).map(([k, v]) => [k, r1(v)])), total: r1(t.totalMs) }); // prettier-ignore
    for (const [k, v] of Object.entries((m as CreateTrace).phases)) {
      const a = seen.get(k) ?? [];
      a.push(v);
      seen.set(k, a);
    }
  };
  subscribe(CREATE_TRACE_CHANNEL, on);
  return {
    stop: () => void unsubscribe(CREATE_TRACE_CHANNEL, on),
    p50: () => Object.fromEntries([...seen].map(([k, v]) => [k, r1(pct(v, 0.5))])),
    max: () => Object.fromEntries([...seen].map(([k, v]) => [k, r1(Math.max(...v))])),
    first: (n) => each.slice(0, n),
  };
}
