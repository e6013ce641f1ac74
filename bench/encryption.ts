/**
 * `npm run bench -- encryption`: pod to pod between two lab nodes, side by side in one run:
 * plaintext (native routes), the mode (WireGuard, or IPsec with --mode=ipsec), and the mode with
 * strict mode, in rotating order per round (root; iperf3 from Debian). (--mode=mtls-tunnel:
 * mtls-tunnel.ts, which bench/index.ts runs instead.) Per window:
 *   - TCP throughput (iperf3, one stream);
 *   - request/response rate (bench/traffic.ts's Node ping-pong, 1-byte messages, TCP_NODELAY);
 *   - CPU per Gbit: CPU-seconds of both iperf3 ends (their own getrusage) plus both nodes'
 *     tunnel processes (wireguard-go, or charon) (/proc/<pid>/stat over the iperf3 run) per Gbit received. The kernel's own
 *     softirq work outside these processes is not counted (on a shared machine it cannot be
 *     told apart from other users').
 * One lab with `--encryption <mode>`; the plaintext rounds swap the routes to the peer's pod
 * CIDR to native ones by hand and back (the agents run with `--resync 0`, so nothing puts them
 * back meanwhile); strict mode is the encryption table with and without its strict chain. Prints
 * one JSON line with the medians, every window and the load average.
 *
 * IPsec: charon's kernel-libipsec also routes each SA's selectors into ipsec0 through its own
 * table 220 (rule 220, ahead of main); plaintext rounds take that rule away and put it back.
 *
 *   npm run bench -- encryption [--mode=wireguard|ipsec] [--seconds=5] [--rounds=3]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { runRaw } from "../src/datapath/exec.js";
import { startLabCluster, type LabNode } from "../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { applyEncryptTable } from "../src/encryption/strict.js";
import type { EncryptionStatus } from "../src/encryption/mode.js";
import { cpuSeconds, pidsIn, sh, TRAFFIC } from "./encryption-window.js";
import { median, r1 } from "./traffic-stats.js";
import { benchArgs, choice, int } from "./cli.js";

const { flags } = benchArgs({
  script: "encryption",
  runner: "encryption",
  measures: "Pod to pod between two lab nodes, side by side in rotating order: plaintext, the mode, the mode with strict mode. TCP Gbit/s (iperf3), request/response rate, CPU per Gbit. One JSON line with the medians, every window and the load.", // prettier-ignore
  root: "a two-node lab: namespaces, nftables, the tunnel; needs iperf3",
  notes: ["--mode=mtls-tunnel is another script: node dist/bench/mtls-tunnel.js (npm run bench -- encryption --mode=mtls-tunnel runs it)."], // prettier-ignore
  flags: {
    mode: choice({ help: "the encryption measured", choices: ["wireguard", "ipsec"], default: "wireguard" }),
    seconds: int({ help: "seconds per window (iperf3 -t)", min: 1, max: 600, default: 5 }),
    rounds: int({ help: "rounds (each runs every mode once)", min: 1, max: 100, default: 3 }),
  },
});
const seconds = flags.seconds;
const rounds = flags.rounds;
const enc = flags.mode;
const MODES = ["plaintext", "encrypted", "encrypted-strict"] as const;
type Mode = (typeof MODES)[number];
/** The tunnel's processes (wireguard-go, or charon) in the named namespaces. */
const tunnelPids = (netns: readonly string[]): number[] =>
  pidsIn(netns, (c) => c === "wireguard-go" || c.startsWith("charon"));

interface Win {
  mode: Mode;
  round: number;
  gbps: number;
  retransmits: number;
  rrPerSec: number;
  cpuSecPerGbit: number;
  wgCpuSec: number;
  /** UDP datagrams the nodes dropped for a full socket buffer (wireguard-go not reading fast enough). */
  udpBufDrops: number;
  load1m: number;
}

/** UdpRcvbufErrors + UdpSndbufErrors of the namespaces (nstat, absolute). */
async function udpBufErrors(netns: readonly string[]): Promise<number> {
  let n = 0;
  for (const ns of netns) {
    const r = await runRaw(["nstat", "-asz", "UdpRcvbufErrors", "UdpSndbufErrors"], { netns: ns });
    for (const line of r.stdout.split("\n")) n += Number(line.trim().split(/\s+/)[1] ?? 0) || 0;
  }
  return n;
}

async function main(): Promise<void> {
  const prefix = (enc === "ipsec" ? "hipb" : "hwgb") + Math.random().toString(36).slice(2, 5);
  const lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: enc });
  const load0 = loadavg();
  const children: ChildProcess[] = [];
  try {
    const [n1, n2] = lab.nodes as [LabNode, LabNode];
    const c = await createEndpoint(n1, "client", { app: "client" });
    const s = await createEndpoint(n2, "server", { app: "server" });
    await waitRemote(n1, [s.ipv4]);
    await waitRemote(n2, [c.ipv4]);
    const st = new Map<LabNode, EncryptionStatus>();
    for (const n of [n1, n2])
      st.set(n, (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus);
    const wgPids = tunnelPids([n1.netns, n2.netns]);
    const cidr = (ip: string): string => ip.replace(/\.\d+$/, ".0/24");
    const setMode = async (mode: Mode): Promise<void> => {
      for (const [n, peer, ip] of [
        [n1, n2, s.ipv4],
        [n2, n1, c.ipv4],
      ] as const) {
        const wg = (st.get(n) as EncryptionStatus).interface;
        const via = mode === "plaintext" ? ["via", peer.ip] : ["dev", wg];
        await sh(n.netns, ["ip", "route", "replace", cidr(ip), ...via, "proto", "211"]);
        if (enc === "ipsec") {
          await runRaw(["ip", "rule", "del", "pref", "220"], { netns: n.netns });
          if (mode !== "plaintext") await sh(n.netns, ["ip", "rule", "add", "pref", "220", "table", "220"]);
        }
        await applyEncryptTable({
          netns: n.netns,
          tunnelIf: wg,
          ...(mode === "encrypted-strict" ? { strictCidrs: ["10.200.0.0/16"] } : {}),
          localCidrs: [cidr(n === n1 ? c.ipv4 : s.ipv4)],
          logGroup: 1,
        });
      }
    };
    const spawnIn = (netns: string, argv: string[]): ChildProcess => {
      const p = spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", "pipe", "ignore"] });
      children.push(p);
      return p;
    };
    spawnIn(s.netns, ["iperf3", "-s", "-p", "5201"]);
    const rr = spawnIn(s.netns, [process.execPath, TRAFFIC, "--rr-server"]);
    let rrOut = "";
    rr.stdout?.on("data", (d: Buffer) => (rrOut += d.toString()));
    for (let i = 0; i < 100 && !rrOut.includes("ready"); i++) await new Promise((r) => setTimeout(r, 50));
    const windows: Win[] = [];
    for (let round = 0; round < rounds; round++) {
      // Rotating order (ABC, BCA, CAB): each mode runs first, middle and last once per three rounds.
      const order = MODES.map((_, i) => MODES[(i + round) % MODES.length] as Mode);
      for (const mode of order) {
        await setMode(mode);
        const wg0 = cpuSeconds(wgPids);
        const udp0 = await udpBufErrors([n1.netns, n2.netns]);
        const out = await sh(c.netns, ["iperf3", "-c", s.ipv4, "-p", "5201", "-t", String(seconds), "-J"]);
        const wgCpuSec = cpuSeconds(wgPids) - wg0;
        const udpBufDrops = (await udpBufErrors([n1.netns, n2.netns])) - udp0;
        const j = JSON.parse(out) as {
          end: {
            sum_received: { bits_per_second: number; bytes: number; seconds: number };
            sum_sent: { retransmits?: number };
            cpu_utilization_percent: { host_total: number; remote_total: number };
          };
        };
        const sum = j.end.sum_received;
        const cpu = j.end.cpu_utilization_percent;
        const endsCpuSec = ((cpu.host_total + cpu.remote_total) / 100) * sum.seconds;
        const gbits = (sum.bytes * 8) / 1e9;
        const rrRun = await sh(c.netns, [
          ...[process.execPath, TRAFFIC, "--rr-client", s.ipv4, String(seconds * 1000)],
        ]);
        const rrJ = JSON.parse(rrRun.trim()) as { perSec?: number; error?: string };
        if (rrJ.perSec === undefined) throw new Error(`rr client: ${rrJ.error ?? rrRun}`);
        windows.push({
          mode,
          round,
          gbps: Math.round(sum.bits_per_second / 1e7) / 100,
          retransmits: j.end.sum_sent.retransmits ?? 0,
          rrPerSec: Math.round(rrJ.perSec),
          cpuSecPerGbit: Math.round(((endsCpuSec + wgCpuSec) / gbits) * 1000) / 1000,
          wgCpuSec: r1(wgCpuSec),
          udpBufDrops,
          load1m: r1(loadavg()[0] ?? 0),
        });
        const w = windows.at(-1) as Win;
        process.stderr.write(
          `round ${round} ${mode.replace("encrypted", enc)}: ${w.gbps} Gbit/s (${w.retransmits} retransmits, ${w.udpBufDrops} UDP buffer drops), ${w.rrPerSec} rr/s, ${w.cpuSecPerGbit} CPU-s/Gbit (load ${w.load1m})\n`,
        );
      }
    }
    const med = (m: Mode, f: (w: Win) => number): number =>
      median(windows.filter((w) => w.mode === m).map(f));
    // Named as they ran: plaintext, wireguard|ipsec, wireguard-strict|ipsec-strict.
    const label = (m: Mode): string => m.replace("encrypted", enc);
    const summary = Object.fromEntries(
      MODES.map((m) => [
        label(m),
        {
          gbps: med(m, (w) => w.gbps),
          rrPerSec: med(m, (w) => w.rrPerSec),
          cpuSecPerGbit: med(m, (w) => w.cpuSecPerGbit),
        },
      ]),
    );
    const pct = (a: number, b: number): number => Math.round((1 - b / a) * 1000) / 10;
    console.log(
      JSON.stringify({
        bench: "encryption",
        mode: enc,
        impl: (st.get(n1) as EncryptionStatus).impl,
        seconds,
        rounds,
        median: summary,
        strictCostPct: {
          gbps: pct(
            med("encrypted", (w) => w.gbps),
            med("encrypted-strict", (w) => w.gbps),
          ),
          rr: pct(
            med("encrypted", (w) => w.rrPerSec),
            med("encrypted-strict", (w) => w.rrPerSec),
          ),
        },
        loadavg: {
          before: load0.map(r1),
          after: loadavg().map(r1),
        },
        windows: windows.map((w) => ({ ...w, mode: label(w.mode) })),
      }),
    );
  } finally {
    for (const p of children) p.kill("SIGKILL");
    await lab.stop();
  }
}

await main();
