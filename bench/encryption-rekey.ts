/**
 * `npm run bench -- encryption-rekey`: node key rotation under a running iperf3, WireGuard and IPsec
 * (root). Per mode one two-node lab (encryption-labs.ts) in strict mode; per round one iperf3 stream
 * from a pod on n1 to a pod on n2 (`--seconds` long, 100 ms intervals) while n1 and then n2 rotate
 * their keys (`POST /v1/encryption/rotate-key`, as `membrane encryption rotate-key`). Figures per
 * round: whether the connection lived (iperf3 ended without error, no TCP reset or abort counted in
 * either pod while the stream ran), the longest stall (consecutive intervals under 10% of the median rate), the slowest
 * interval, retransmits, bytes sent vs received, and the rotations' times within the stream.
 * One JSON line with every round and the load average; a table on standard error.
 *
 *   npm run bench -- encryption-rekey [--mode=wireguard,ipsec] [--seconds=30] [--rounds=2]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { table } from "../src/cli/format.js";
import { runRaw } from "../src/datapath/exec.js";
import type { LabNode } from "../src/lab/cluster.js";
import { startModeLab, type ModeLab, type Tunnel } from "./encryption-labs.js";
import { median, r1 } from "./traffic-stats.js";
import { benchArgs, custom, int } from "./cli.js";

/** The flags of `node dist/bench/encryption-rekey.js` (bench/cli.ts), checked before any lab is made. */
const SPEC = {
  script: "encryption-rekey",
  runner: "encryption-rekey",
  measures: "Key rotation of both nodes under a running iperf3, per mode: whether the connection lived, resets, the longest stall, the slowest 100 ms interval, retransmits. One JSON line on stdout, a table on stderr.", // prettier-ignore
  root: "one two-node lab per mode: namespaces, nftables, the tunnels; needs iperf3, wireguard-go, strongSwan",
  flags: {
    mode: custom({
      help: "wireguard, ipsec or both (the mTLS tunnel renews its SVIDs by itself)",
      value: "MODE[,MODE]",
      default: ["wireguard", "ipsec"] as readonly Tunnel[],
      shown: "wireguard,ipsec",
      parse: (m) => {
        const modes = m.split(",");
        if (modes.length === 0 || modes.some((x) => x !== "wireguard" && x !== "ipsec"))
          throw new Error("give wireguard, ipsec or both (the mTLS tunnel renews its SVIDs by itself)");
        return [...new Set(modes)] as Tunnel[];
      },
    }),
    seconds: int({ help: "length of each iperf3 stream (two rotations take ~12 s)", min: 15, max: 600, default: 30 }), // prettier-ignore
    rounds: int({ help: "streams per mode", min: 1, max: 20, default: 2 }),
  },
} as const;

interface Interval {
  sum: { start: number; end: number; bytes: number; bits_per_second: number; retransmits?: number };
}
interface IperfOut {
  intervals?: Interval[];
  end?: { sum_sent?: { bytes: number; retransmits?: number }; sum_received?: { bytes: number } };
  error?: string;
}

interface Round {
  mode: Tunnel;
  round: number;
  lived: boolean;
  error?: string;
  resets: number;
  medianMbps: number;
  slowestMbps: number;
  longestStallMs: number;
  retransmits: number;
  bytesSent: number;
  bytesReceived: number;
  /** Seconds into the stream when each rotation was asked for and answered. */
  rotations: { node: string; askedAt: number; doneAt: number }[];
  load1m: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** TCP resets and aborts counted in a namespace (nstat, absolute). */
async function resets(netns: string): Promise<number> {
  const r = await runRaw(["nstat", "-asz", "TcpEstabResets", "TcpOutRsts", "TcpExtTCPAbortOnData", "TcpExtTCPAbortOnTimeout"], { netns }); // prettier-ignore
  return r.stdout.split("\n").reduce((a, l) => a + (Number(l.trim().split(/\s+/)[1] ?? 0) || 0), 0);
}

async function round(l: ModeLab, i: number, seconds: number, children: ChildProcess[]): Promise<Round> {
  const [n1, n2] = l.lab.nodes as [LabNode, LabNode];
  const ns = [l.target.clientNetns, l.serverNetns];
  const rst0 = (await resets(ns[0] as string)) + (await resets(ns[1] as string));
  const p = spawn("ip", ["netns", "exec", l.target.clientNetns, "iperf3", "-c", l.target.serverIp, "-p", "5201", "-t", String(seconds), "-i", "0.1", "-J"], { stdio: ["ignore", "pipe", "ignore"], detached: true }); // prettier-ignore
  children.push(p);
  let out = "";
  p.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((res) => p.once("exit", (c) => res(c)));
  const t0 = Date.now();
  const at = (): number => r1((Date.now() - t0) / 1000);
  const rotations: Round["rotations"] = [];
  await sleep(Math.min(3000, (seconds * 1000) / 6));
  for (const n of [n1, n2]) {
    const askedAt = at();
    await n.client.request("POST", "/v1/encryption/rotate-key");
    rotations.push({ node: n.name, askedAt, doneAt: at() });
  }
  // Resets counted while the stream runs, up to a second before its end (iperf3's own teardown
  // sends some: a receiver closing with data unread).
  await Promise.race([done, sleep(t0 + (seconds - 1) * 1000 - Date.now())]);
  const rst = (await resets(ns[0] as string)) + (await resets(ns[1] as string)) - rst0;
  const code = await done;
  const j = JSON.parse(out || "{}") as IperfOut;
  const rates = (j.intervals ?? []).map((x) => x.sum.bits_per_second / 1e6);
  const med = median(rates);
  let stall = 0;
  let run = 0;
  for (const x of j.intervals ?? []) {
    run = x.sum.bits_per_second / 1e6 < med / 10 ? run + (x.sum.end - x.sum.start) * 1000 : 0;
    stall = Math.max(stall, run);
  }
  return {
    mode: l.mode,
    round: i,
    lived: code === 0 && j.error === undefined && rst === 0,
    ...(j.error !== undefined ? { error: j.error } : {}),
    resets: rst,
    medianMbps: Math.round(med),
    slowestMbps: Math.round(Math.min(...rates)),
    longestStallMs: Math.round(stall),
    retransmits: j.end?.sum_sent?.retransmits ?? 0,
    bytesSent: j.end?.sum_sent?.bytes ?? 0,
    bytesReceived: j.end?.sum_received?.bytes ?? 0,
    rotations,
    load1m: r1(loadavg()[0] ?? 0),
  };
}

async function main(): Promise<void> {
  const { flags } = benchArgs(SPEC);
  const modes = [...flags.mode];
  const seconds = flags.seconds;
  const rounds = flags.rounds;
  const run = Math.random().toString(36).slice(2, 5);
  const children: ChildProcess[] = [];
  const labs: ModeLab[] = [];
  const load0 = loadavg();
  const out: Round[] = [];
  try {
    for (const m of modes as Tunnel[]) {
      process.stderr.write(`starting the ${m} lab (two nodes, strict mode) ...\n`);
      const l = await startModeLab(m, `m3ek${m[0]}${run}`, children);
      await l.set("strict");
      labs.push(l);
    }
    for (let i = 0; i < rounds; i++)
      for (const l of i % 2 === 0 ? labs : [...labs].reverse()) {
        const r = await round(l, i, seconds, children);
        out.push(r);
        process.stderr.write(`round ${i} ${r.mode}: ${r.lived ? "lived" : "LOST"}, longest stall ${r.longestStallMs} ms, slowest 100 ms ${r.slowestMbps} Mbit/s (median ${r.medianMbps}), ${r.retransmits} retransmits (load ${r.load1m})\n`); // prettier-ignore
      }
    for (const l of labs) await l.set("encrypted");
    process.stderr.write(
      "\n" +
        table([
          [
            "MODE",
            "ROUND",
            "CONNECTION",
            "LONGEST STALL",
            "SLOWEST 100MS",
            "MEDIAN",
            "RETRANSMITS",
            "LOAD 1M",
          ],
          ...out.map((r) => [r.mode, String(r.round), r.lived ? "lived" : `lost (${r.error ?? `${r.resets} resets`})`, `${r.longestStallMs} ms`, `${r.slowestMbps} Mbit/s`, `${r.medianMbps} Mbit/s`, String(r.retransmits), String(r.load1m)]), // prettier-ignore
        ]).join("\n") +
        "\n",
    );
    console.log(JSON.stringify({ bench: "encryption-rekey", modes, seconds, rounds, loadavg: { before: load0.map(r1), after: loadavg().map(r1) }, results: out })); // prettier-ignore
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
