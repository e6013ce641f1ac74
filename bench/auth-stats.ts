/**
 * What the auth benchmarks (auth.ts one node, auth-nodes.ts across nodes) share: percentiles and
 * the kernel's count of SYN retransmissions in a namespace (a first packet held past the client's
 * 1 s retransmission timer, or dropped, shows there: "no packet lost" is this count staying 0).
 */
import { runRaw } from "../src/datapath/exec.js";
import type { PairProfile, Phase } from "../src/auth/timing.js";

export const pct = (xs: readonly number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return Math.round((s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN) * 100) / 100;
};

/** Percentiles of the samples that are numbers (a failed connection is NaN, counted apart). */
export const row = (all: readonly number[]): { p50: number; p99: number; max: number; n: number } => {
  const xs = all.filter((x) => Number.isFinite(x));
  return { p50: pct(xs, 50), p99: pct(xs, 99), max: Math.round(Math.max(...xs) * 100) / 100, n: xs.length };
};

/** TcpExt TCPSynRetrans of the namespace: SYNs the clients there sent again. */
export async function synRetransmits(netns: readonly string[]): Promise<number> {
  let n = 0;
  for (const ns of netns) {
    const r = await runRaw(["cat", "/proc/net/netstat"], { netns: ns });
    const lines = r.stdout.split("\n").filter((l) => l.startsWith("TcpExt:"));
    const names = (lines[0] ?? "").split(/\s+/);
    const values = (lines[1] ?? "").split(/\s+/);
    const i = names.indexOf("TCPSynRetrans");
    if (i > 0) n += Number(values[i] ?? 0) || 0;
  }
  return n;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const PHASES: readonly Phase[] = ["start", "connected", "answered", "validated", "released", "kernel"];

/**
 * p50/p99 of each phase of the held packets' profiles (ms since the agent read the packet), and
 * how many used a pooled connection already open.
 */
export function phaseRows(ps: readonly PairProfile[]): Record<string, unknown> {
  const out: Record<string, unknown> = { n: ps.length, reused: ps.filter((p) => p.reused).length };
  const lag = ps.map((p) => p.readLagMs).filter((x) => Number.isFinite(x) && x > 0);
  if (lag.length > 0) out["readLag"] = { p50: pct(lag, 50), p99: pct(lag, 99) };
  for (const ph of PHASES) {
    const xs = ps.map((p) => p.ms[ph]).filter((x): x is number => x !== undefined);
    if (xs.length > 0) out[ph] = { p50: pct(xs, 50), p99: pct(xs, 99) };
  }
  return out;
}
