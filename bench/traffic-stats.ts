/**
 * The statistics of the traffic benchmark (traffic.ts): one window per
 * condition and round, rounds in ABBA order, and the ratio of each round's
 * pair of windows (adjacent in time, so a slow drift of the machine's load
 * touches both alike).
 *
 *   round 0: none, membrane   round 1: membrane, none   round 2: none, membrane ...
 *   pair ratio = membrane / none of the same round; figure = median of the pair ratios,
 *   spread = min..max of them
 *
 * Each window also records the CPU time the two ends used (client + server,
 * user + system; this kernel charges the softirq a veth delivery runs in to
 * the sending task, CONFIG_IRQ_TIME_ACCOUNTING is off), so that the work per
 * byte or per round trip can be compared even when other processes take the
 * CPUs; and the CPU the benchmark's own process used meanwhile (the agent runs
 * in it): the agent's background work during a window, in both conditions.
 */

/** One measurement window: one condition in one round. */
export interface Window {
  readonly round: number;
  readonly cond: string;
  /** iperf3 Gbit/s received (undefined: iperf3 not installed). */
  readonly gbps?: number;
  /** iperf3 client + server CPU seconds per GByte received. */
  readonly cpuSecPerGB?: number;
  /** Ping-pong round trips per second. */
  readonly rr: number;
  /** Ping-pong client + server CPU microseconds per round trip. */
  readonly cpuUsPerRt: number;
  /** CPU ms of the benchmark's own process (the agent, the reconciler) during the window. */
  readonly agentCpuMs: number;
  /** 1-minute load average at the end of the window. */
  readonly load1m: number;
  /** How many times the window was taken (traffic.ts: again when the agent was busy in it). */
  readonly attempts?: number;
}

export function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}
export const median = (xs: readonly number[]): number => pct(xs, 0.5);
export const r1 = (x: number): number => Math.round(x * 10) / 10;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** The order of the conditions in round `round`: as given in even rounds, reversed in odd ones. */
export function roundOrder<T>(conditions: readonly T[], round: number): T[] {
  return round % 2 === 0 ? [...conditions] : [...conditions].reverse();
}

/** Ratios b/a of each round where both conditions have the value (`higherIsBetter` false: a/b). */
export function pairRatios<W extends { readonly round: number; readonly cond: string } = Window>(
  windows: readonly W[],
  a: string,
  b: string,
  value: (w: W) => number | undefined,
  higherIsBetter = true,
): number[] {
  const rounds = [...new Set(windows.map((w) => w.round))].sort((x, y) => x - y);
  const out: number[] = [];
  for (const r of rounds) {
    const wa = windows.find((w) => w.round === r && w.cond === a);
    const wb = windows.find((w) => w.round === r && w.cond === b);
    const va = wa === undefined ? undefined : value(wa);
    const vb = wb === undefined ? undefined : value(wb);
    if (va === undefined || vb === undefined || !(va > 0) || !(vb > 0)) continue;
    out.push(higherIsBetter ? vb / va : va / vb);
  }
  return out;
}

/** Median and spread of paired ratios. */
export function ratioSummary(ratios: readonly number[]): {
  ratio: number;
  spread: [number, number];
  pairs: number[];
} {
  return {
    ratio: r3(median(ratios)),
    spread: [r3(Math.min(...ratios)), r3(Math.max(...ratios))],
    pairs: ratios.map(r3),
  };
}

/** (max - min) / median of the samples, in percent: the spread within one condition. */
export function spreadPct(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  return Math.round(((Math.max(...xs) - Math.min(...xs)) / median(xs)) * 1000) / 10;
}
