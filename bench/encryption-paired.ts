/**
 * `npm run bench -- encryption --paired`: strict mode's cost against the same mode without it,
 * per encrypted mode, in ADJACENT windows of the SAME running lab (strict mode is one chain of the
 * encryption table: the bench swaps the table, nothing restarts), rounds in ABBA order, figure =
 * median of the pair ratios with their spread (traffic-stats.ts, as issue 10's traffic bench).
 *
 *   round r, each mode's lab (the labs' order rotating per round):
 *     even r: strict, encrypted[, strict-xN]     odd r: [strict-xN,] encrypted, strict
 *   pair ratio = strict / encrypted of the same round and lab (Gbit/s, rr/s; CPU-s per Gbit:
 *   encrypted / strict), cost = 1 - ratio
 *
 * The direct measure (`--strict-copies=N`, N > 1): a third condition whose strict chain holds each
 * of its lookups N times (never dropping) and a first rule counting the packets it sees; its cost
 * against the encrypted window, divided by N, is one lookup's cost, far above the noise that hides
 * a single one; the count gives the packets per window that paid it (and so a CPU time per
 * lookup, from the CPU per Gbit both ends and the tunnel used).
 */
import type { Measured, WindowTarget } from "./encryption-window.js";
import type { LabState, ModeLab } from "./encryption-labs.js";
import { median, pairRatios, r1, ratioSummary, roundOrder } from "./traffic-stats.js";

export interface PairedOptions {
  readonly seconds: number;
  readonly rounds: number;
  /** Lookups per packet in the direct-measure condition (1: no such condition). */
  readonly copies: number;
}

type Measure = (t: WindowTarget, seconds: number, count?: () => Promise<number>) => Promise<Measured>;
type Win = Measured & { cond: string; mode: string; round: number };

interface Cond {
  readonly name: string;
  readonly state: LabState;
  readonly copies: number;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** Runs the paired windows; returns the summary object (also printed as the last JSON line). */
export async function runPaired(
  labs: readonly ModeLab[],
  o: PairedOptions,
  measure: Measure,
  say: (s: string) => void,
): Promise<Record<string, unknown>> {
  // The encrypted window in the middle: adjacent to both others, in both orders.
  const conds: Cond[] = [
    { name: "strict", state: "strict", copies: 1 },
    { name: "encrypted", state: "encrypted", copies: 1 },
    ...(o.copies > 1 ? [{ name: `strict-x${o.copies}`, state: "strict" as const, copies: o.copies }] : []),
  ];
  const windows: Win[] = [];
  for (let round = 0; round < o.rounds; round++) {
    const order = labs.map((_, i) => labs[(i + round) % labs.length] as ModeLab);
    for (const lab of order) {
      for (const c of roundOrder(conds, round)) {
        await lab.set(c.state, c.copies);
        // Packets through the strict chain during the iperf3 run (the direct measure's condition).
        const m = await measure(lab.target, o.seconds, c.copies > 1 ? () => lab.strictPackets() : undefined);
        const w: Win = { cond: c.name, mode: lab.mode, round, ...m };
        windows.push(w);
        console.log(JSON.stringify({ bench: "encryption", paired: true, window: w }));
        say(
          `round ${round} ${lab.mode} ${c.name}: ${m.gbps} Gbit/s, ${m.rrPerSec} rr/s, ${m.cpuSecPerGbit} CPU-s/Gbit (load ${m.load1m})`,
        );
      }
    }
  }
  for (const l of labs) await l.set("encrypted");
  const perMode = Object.fromEntries(
    labs.map((l) => {
      const ws = windows.filter((w) => w.mode === l.mode);
      const pair = (b: string): Record<string, unknown> => {
        const g = ratioSummary(pairRatios(ws, "encrypted", b, (w) => w.gbps));
        const rr = ratioSummary(pairRatios(ws, "encrypted", b, (w) => w.rrPerSec));
        const cpu = ratioSummary(pairRatios(ws, "encrypted", b, (w) => w.cpuSecPerGbit, false));
        return {
          gbps: g,
          rr,
          cpuPerGbit: cpu,
          costPct: { gbps: r1((1 - g.ratio) * 100), rr: r1((1 - rr.ratio) * 100), cpuPerGbit: r1((1 - cpu.ratio) * 100) }, // prettier-ignore
        };
      };
      const out: Record<string, unknown> = { strict: pair("strict") };
      if (o.copies > 1) {
        const name = `strict-x${o.copies}`;
        const amp = pair(name) as { gbps: { ratio: number }; cpuPerGbit: { ratio: number } };
        const xs = ws.filter((w) => w.cond === name);
        // Packets per Gbit through the chain, and the extra CPU per Gbit the N lookups cost.
        const pktsPerGbit = median(xs.map((w) => (w.counted ?? 0) / Math.max(1e-9, w.gbps * o.seconds))); // prettier-ignore
        const encCpu = median(ws.filter((w) => w.cond === "encrypted").map((w) => w.cpuSecPerGbit));
        const extraCpuPerGbit = encCpu * (1 / amp.cpuPerGbit.ratio - 1);
        out[name] = {
          ...amp,
          perCopyCostPct: { gbps: r3(((1 - amp.gbps.ratio) * 100) / o.copies), cpuPerGbit: r3(((1 / amp.cpuPerGbit.ratio - 1) * 100) / o.copies) }, // prettier-ignore
          packetsPerGbit: Math.round(pktsPerGbit),
          // Each packet passes N copies of the chain's rules: CPU per packet per copy.
          nsPerCopyPerPacket: pktsPerGbit > 0 ? r1((extraCpuPerGbit / (pktsPerGbit * o.copies)) * 1e9) : null,
        };
      }
      return [l.mode, out];
    }),
  );
  const rows = labs.map((l) => {
    const s = (perMode[l.mode] as { strict: { costPct: { gbps: number; rr: number; cpuPerGbit: number }; gbps: { spread: number[] }; rr: { spread: number[] } } }).strict; // prettier-ignore
    return `${l.mode}: strict cost ${s.costPct.gbps}% Gbit/s (pairs ${s.gbps.spread.join("..")}), ${s.costPct.rr}% rr/s (pairs ${s.rr.spread.join("..")}), ${s.costPct.cpuPerGbit}% CPU per Gbit`; // prettier-ignore
  });
  say(`\npaired, ${o.rounds} ABBA rounds of ${o.seconds} s windows (cost = 1 - median of strict/encrypted pair ratios):`); // prettier-ignore
  say(rows.join("\n"));
  return { order: "ABBA per lab: adjacent windows of the same lab; ratio = median of the pair ratios", perMode, windows }; // prettier-ignore
}
