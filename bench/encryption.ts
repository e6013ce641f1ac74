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
 *   npm run bench -- encryption --paired [--rounds=10] [--strict-copies=100]   strict mode's cost,
 *     paired: strict vs not in adjacent windows of the same lab, ABBA (encryption-paired.ts)
 */
import { type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { table } from "../src/cli/format.js";
import { measure, type Measured } from "./encryption-window.js";
import { startModeLab, TUNNELS, type LabState, type ModeLab, type Tunnel } from "./encryption-labs.js";
import { median, r1 } from "./traffic-stats.js";
import { runPaired } from "./encryption-paired.js";
import { benchArgs, custom, flag, int } from "./cli.js";

/** The flags of `node dist/bench/encryption.js` (bench/cli.ts), checked before any lab is made. */
const SPEC = {
  script: "encryption",
  runner: "encryption",
  measures: "Pod to pod between two lab nodes, every mode side by side in one run, rotating order per round: plaintext, WireGuard, IPsec and the mTLS node tunnel, each also with strict mode. TCP Gbit/s (iperf3), request/response rate, CPU-s per Gbit, UDP buffer drops, the load average. JSON lines (one per window, then the summary) on stdout, a table on stderr.", // prettier-ignore
  root: "one two-node lab per mode: namespaces, nftables, the tunnels; needs iperf3, wireguard-go, strongSwan",
  flags: {
    mode: custom({
      help: `all, or a comma-separated list of ${TUNNELS.join(", ")}`,
      value: "all|MODE[,MODE...]",
      default: [...TUNNELS] as readonly Tunnel[],
      shown: "all",
      parse: (m) => {
        const modes = m === "all" ? [...TUNNELS] : m.split(",");
        const bad = modes.find((x) => !(TUNNELS as readonly string[]).includes(x));
        if (bad !== undefined || modes.length === 0)
          throw new Error(`give all, or a comma-separated list of ${TUNNELS.join(", ")}`);
        return [...new Set(modes)] as Tunnel[];
      },
    }),
    seconds: int({ help: "seconds per window (iperf3 -t)", min: 1, max: 120, default: 5 }),
    rounds: int({ help: "rounds (each runs every condition once)", min: 1, max: 50, default: 3 }),
    "no-strict": flag("leave out the strict-mode conditions"),
    paired: flag(
      "strict mode's cost only: strict vs not in adjacent windows of the same lab, ABBA rounds, median of the pair ratios, per encrypted mode (no plaintext)",
    ),
    "strict-copies": int({
      help: "with --paired: also a condition whose strict chain repeats each lookup N times (one lookup's cost = its cost / N)",
      min: 1,
      max: 2000,
      default: 1,
    }),
  },
} as const;

interface Condition {
  readonly name: string;
  readonly lab: ModeLab;
  readonly state: LabState;
}
type Win = Measured & { cond: string; round: number };

async function main(): Promise<void> {
  const { flags } = benchArgs(SPEC);
  const o = {
    modes: [...flags.mode],
    seconds: flags.seconds,
    rounds: flags.rounds,
    strict: !flags["no-strict"],
  };
  const run = Math.random().toString(36).slice(2, 5);
  const children: ChildProcess[] = [];
  const labs: ModeLab[] = [];
  const load0 = loadavg();
  const say = (s: string): boolean => process.stderr.write(s + "\n");
  try {
    for (const mode of o.modes) {
      say(`starting the ${mode} lab (two nodes) ...`);
      labs.push(await startModeLab(mode, `m4e${mode[0]}${run}`, children));
    }
    if (flags.paired) {
      const copies = flags["strict-copies"];
      const paired = await runPaired(labs, { seconds: o.seconds, rounds: o.rounds, copies }, measure, say);
      console.log(JSON.stringify({ bench: "encryption", paired: true, modes: o.modes, seconds: o.seconds, rounds: o.rounds, strictCopies: copies, ...paired, loadavg: { before: load0.map(r1), after: loadavg().map(r1) } })); // prettier-ignore
      return;
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
