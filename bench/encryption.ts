/**
 * `npm run bench -- encryption`: pod-to-pod TCP between two lab nodes, every mode side by side in
 * ONE run (root; iperf3, wireguard-go, strongSwan from Debian): plaintext, WireGuard, IPsec and the
 * mTLS node tunnel, each also with strict mode, in rotating order per round (each condition runs
 * early, middle and late once per cycle), so that the machine's drifting load touches all alike.
 *
 *   conditions: plaintext | wireguard, wireguard-strict | ipsec, ipsec-strict | mtls-tunnel, mtls-tunnel-strict
 *   per window (encryption-window.ts): TCP Gbit/s (iperf3), request/response rate (1-byte ping-pong),
 *     CPU-s per Gbit (both iperf3 ends + the tunnel's processes), UDP buffer drops, load average
 *
 * One two-node lab per mode (encryption-labs.ts: same shape, own namespaces), all started before the
 * first window and running throughout; plaintext is measured in the first mode's lab with its
 * routes (or redirect) taken out by hand. Prints JSON lines (standard output, for machines): one per
 * window as it ends, then one with the medians per condition, strict mode's cost against the same
 * mode without it, the mTLS tunnel against wireguard-go, every window and the load average; and a
 * table (standard error, for people).
 *
 *   npm run bench -- encryption [--mode=all|wireguard,ipsec,mtls-tunnel] [--seconds=5] [--rounds=3] [--no-strict]
 */
import { type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { table } from "../src/cli/format.js";
import { measure, type Measured } from "./encryption-window.js";
import { startModeLab, TUNNELS, type LabState, type ModeLab, type Tunnel } from "./encryption-labs.js";
import { median, r1 } from "./traffic-stats.js";

const USAGE = `Usage: npm run bench -- encryption [--mode=all|MODE[,MODE...]] [--seconds=5] [--rounds=3] [--no-strict]

Pod-to-pod TCP between two lab nodes (root): plaintext and each MODE (wireguard, ipsec, mtls-tunnel;
default all), each with and without strict mode, in rotating order per round, one two-node lab per mode.
Prints a table on standard error and JSON lines on standard output (one per window, then the summary). Report the load average beside
any figure: this machine is shared.`;

interface Condition {
  readonly name: string;
  readonly lab: ModeLab;
  readonly state: LabState;
}
type Win = Measured & { cond: string; round: number };

function options(argv: readonly string[]): {
  modes: Tunnel[];
  seconds: number;
  rounds: number;
  strict: boolean;
} {
  const arg = (name: string): string | undefined =>
    argv.find((x) => x.startsWith(`--${name}=`))?.split("=")[1];
  const num = (name: string, def: number, min: number, max: number): number => {
    const t = arg(name);
    const n = Number(t ?? def);
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name}=${t}: give a whole number ${min}..${max}`); // prettier-ignore
    return n;
  };
  const m = arg("mode") ?? "all";
  const modes = m === "all" ? [...TUNNELS] : m.split(",");
  const bad = modes.find((x) => !(TUNNELS as readonly string[]).includes(x));
  if (bad !== undefined || modes.length === 0)
    throw new Error(`--mode=${m}: give all, or a comma-separated list of ${TUNNELS.join(", ")}`);
  return {
    modes: [...new Set(modes)] as Tunnel[],
    seconds: num("seconds", 5, 1, 120),
    rounds: num("rounds", 3, 1, 50),
    strict: !argv.includes("--no-strict"),
  };
}

async function main(): Promise<void> {
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    console.log(USAGE);
    return;
  }
  const o = options(process.argv.slice(2));
  const run = Math.random().toString(36).slice(2, 5);
  const children: ChildProcess[] = [];
  const labs: ModeLab[] = [];
  const load0 = loadavg();
  const say = (s: string): boolean => process.stderr.write(s + "\n");
  try {
    for (const mode of o.modes) {
      say(`starting the ${mode} lab (two nodes) ...`);
      labs.push(await startModeLab(mode, `m3e${mode[0]}${run}`, children));
    }
    const first = labs[0] as ModeLab;
    const conds: Condition[] = [
      { name: "plaintext", lab: first, state: "plaintext" },
      ...labs.flatMap((l): Condition[] => [
        { name: l.mode, lab: l, state: "encrypted" },
        ...(o.strict ? [{ name: `${l.mode}-strict`, lab: l, state: "strict" as const }] : []),
      ]),
    ];
    const windows: Win[] = [];
    for (let round = 0; round < o.rounds; round++) {
      // Rotating order: each condition runs in every position once per conds.length rounds.
      const order = conds.map((_, i) => conds[(i + round) % conds.length] as Condition);
      for (const c of order) {
        await c.lab.set(c.state);
        const m = await measure(c.lab.target, o.seconds);
        windows.push({ cond: c.name, round, ...m });
        console.log(JSON.stringify({ bench: "encryption", window: windows.at(-1) }));
        say(
          `round ${round} ${c.name}: ${m.gbps} Gbit/s (${m.retransmits} retransmits, ${m.udpBufDrops} UDP buffer drops), ${m.rrPerSec} rr/s, ${m.cpuSecPerGbit} CPU-s/Gbit (load ${m.load1m})`,
        );
      }
    }
    for (const l of labs) await l.set("encrypted"); // as the agents made it (they are stopped next)
    const med = (cond: string, f: (w: Win) => number): number =>
      median(windows.filter((w) => w.cond === cond).map(f));
    const pct = (a: number, b: number): number => Math.round((1 - b / a) * 1000) / 10;
    const summary = Object.fromEntries(
      conds.map((c) => [
        c.name,
        {
          gbps: med(c.name, (w) => w.gbps),
          rrPerSec: med(c.name, (w) => w.rrPerSec),
          cpuSecPerGbit: med(c.name, (w) => w.cpuSecPerGbit),
          load1m: med(c.name, (w) => w.load1m),
        },
      ]),
    );
    const strictCostPct = o.strict
      ? Object.fromEntries(
          labs.map((l) => [
            l.mode,
            {
              gbps: pct(
                med(l.mode, (w) => w.gbps),
                med(`${l.mode}-strict`, (w) => w.gbps),
              ),
              rr: pct(
                med(l.mode, (w) => w.rrPerSec),
                med(`${l.mode}-strict`, (w) => w.rrPerSec),
              ),
            },
          ]),
        )
      : undefined;
    const both = o.modes.includes("mtls-tunnel") && o.modes.includes("wireguard");
    const rows = [
      ["CONDITION", "GBIT/S", "RR/S", "CPU-S/GBIT", "STRICT COST (GBIT/S, RR/S)", "LOAD 1M"],
      ...conds.map((c) => {
        const s = summary[c.name] as {
          gbps: number;
          rrPerSec: number;
          cpuSecPerGbit: number;
          load1m: number;
        };
        const cost = c.state === "strict" ? strictCostPct?.[c.lab.mode] : undefined;
        return [c.name, String(s.gbps), String(s.rrPerSec), String(s.cpuSecPerGbit), cost ? `${cost.gbps}%, ${cost.rr}%` : "", String(s.load1m)]; // prettier-ignore
      }),
    ];
    say(
      `\nmedians of ${o.rounds} rounds of ${o.seconds} s windows (strict cost: 1 - strict/without, per mode)`,
    );
    say(table(rows).join("\n"));
    console.log(
      JSON.stringify({
        bench: "encryption",
        modes: o.modes,
        impl: Object.fromEntries(labs.map((l) => [l.mode, l.status.impl])),
        seconds: o.seconds,
        rounds: o.rounds,
        median: summary,
        ...(strictCostPct ? { strictCostPct } : {}),
        ...(both
          ? { mtlsVsWireguard: Math.round((med("mtls-tunnel", (w) => w.gbps) / med("wireguard", (w) => w.gbps)) * 100) / 100 } // prettier-ignore
          : {}),
        loadavg: { before: load0.map(r1), after: loadavg().map(r1) },
        windows,
      }),
    );
  } finally {
    for (const p of children)
      if (p.pid !== undefined)
        try {
          process.kill(-p.pid, "SIGKILL");
        } catch {
          /* gone */
        }
    for (const l of labs.reverse()) await l.lab.stop();
  }
}

await main();
