/**
 * `npm run bench -- encryption --mode=mtls-tunnel` (also `npm run bench -- mtls-tunnel`): pod to
 * pod between two lab nodes, side by side in one run, in rotating order per round (root; iperf3
 * from Debian): plaintext, the mTLS node tunnel (TLS 1.3 + HTTP/2 CONNECT), the tunnel with strict
 * mode, and wireguard-go (a second two-node lab with `--encryption wireguard`, beside the first).
 * Per window (encryption-window.ts): TCP Gbit/s, request/response rate, CPU per Gbit (both iperf3
 * ends plus the tunnel processes of both nodes: the mTLS tunnel's, or wireguard-go).
 *
 * One lab with `--encryption mtls-tunnel`; the plaintext rounds replace the encryption table with
 * one without the redirect (the agents run with `--resync 0`), the tunnel rounds put it back, with
 * or without the strict chain. Prints one JSON line with the medians, every window and the load.
 * The target: the tunnel at least matches wireguard-go's throughput here.
 *
 *   npm run bench -- encryption --mode=mtls-tunnel [--seconds=5] [--rounds=3] [--no-wireguard]
 */
import { spawn, type ChildProcess } from "node:child_process";
import { loadavg } from "node:os";
import { startLabCluster, type LabCluster, type LabNode } from "../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { applyEncryptTable } from "../src/encryption/strict.js";
import type { EncryptionStatus } from "../src/encryption/mode.js";
import { measure, pidsIn, TRAFFIC, type Measured } from "./encryption-window.js";
import { median, r1 } from "./traffic-stats.js";
import { benchArgs, choice, flag, int } from "./cli.js";

const { flags } = benchArgs({
  script: "mtls-tunnel",
  runner: "mtls-tunnel",
  measures: "Pod to pod between two lab nodes, side by side in rotating order: plaintext, the mTLS node tunnel, the tunnel with strict mode, wireguard-go (a second lab). TCP Gbit/s, request/response rate, CPU per Gbit. One JSON line with the medians, every window and the load.", // prettier-ignore
  root: "two-node labs: namespaces, nftables, the tunnels; needs iperf3",
  notes: ["Also: npm run bench -- encryption --mode=mtls-tunnel."],
  flags: {
    mode: choice({ help: "the only mode of this script (so that encryption's --mode may be passed on)", choices: ["mtls-tunnel"], default: "mtls-tunnel" }), // prettier-ignore
    seconds: int({ help: "seconds per window (iperf3 -t)", min: 1, max: 600, default: 5 }),
    rounds: int({ help: "rounds (each runs every mode once)", min: 1, max: 100, default: 3 }),
    "no-wireguard": flag("leave wireguard-go out (no second lab)"),
  },
});
const seconds = flags.seconds;
const rounds = flags.rounds;
const withWg = !flags["no-wireguard"];
type Mode = "plaintext" | "mtls-tunnel" | "mtls-tunnel-strict" | "wireguard-go";
type Win = Measured & { mode: Mode; round: number };

interface Pair {
  readonly lab: LabCluster;
  readonly client: { netns: string; ipv4: string };
  readonly server: { netns: string; ipv4: string };
  readonly nodes: readonly LabNode[];
}

/** A client pod on n1 and a server pod on n2 (iperf3 and the ping-pong server in it). */
async function pods(lab: LabCluster, children: ChildProcess[]): Promise<Pair> {
  const [n1, n2] = lab.nodes as [LabNode, LabNode];
  const client = await createEndpoint(n1, "client", { app: "client" });
  const server = await createEndpoint(n2, "server", { app: "server" });
  await waitRemote(n1, [server.ipv4]);
  await waitRemote(n2, [client.ipv4]);
  const spawnIn = (argv: string[]): ChildProcess => {
    const p = spawn("ip", ["netns", "exec", server.netns, ...argv], { stdio: ["ignore", "pipe", "ignore"], detached: true }); // prettier-ignore
    children.push(p);
    return p;
  };
  spawnIn(["iperf3", "-s", "-p", "5201"]);
  const rr = spawnIn([process.execPath, TRAFFIC, "--rr-server"]);
  let rrOut = "";
  rr.stdout?.on("data", (d: Buffer) => (rrOut += d.toString()));
  for (let i = 0; i < 100 && !rrOut.includes("ready"); i++) await new Promise((r) => setTimeout(r, 50));
  return { lab, client, server, nodes: [n1, n2] };
}

async function main(): Promise<void> {
  const prefix = "m2tb" + Math.random().toString(36).slice(2, 5);
  const children: ChildProcess[] = [];
  const labs: LabCluster[] = [];
  const load0 = loadavg();
  try {
    labs.push(await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: "mtls-tunnel" }));
    if (withWg)
      labs.push(
        await startLabCluster({ prefix: prefix + "w", nodes: 2, leaseTtl: 30, encryption: "wireguard" }),
      );
    const mt = await pods(labs[0] as LabCluster, children);
    const wg = withWg ? await pods(labs[1] as LabCluster, children) : undefined;
    const cidr = (ip: string): string => ip.replace(/\.\d+$/, ".0/24");
    const gw = (ip: string): string => ip.replace(/\.\d+$/, ".1");
    const table = async (mode: Mode): Promise<void> => {
      for (const [n, ip] of [
        [mt.nodes[0] as LabNode, mt.client.ipv4],
        [mt.nodes[1] as LabNode, mt.server.ipv4],
      ] as const)
        await applyEncryptTable({
          netns: n.netns,
          ...(mode !== "plaintext"
            ? { tunnel: { redirect4: gw(ip), port: 15006, clusterCidrs: ["10.200.0.0/16"] } }
            : {}),
          ...(mode === "mtls-tunnel-strict" ? { strictCidrs: ["10.200.0.0/16"] } : {}),
          localCidrs: [cidr(ip)],
          logGroup: 1,
        });
    };
    const mtPids: number[] = [];
    for (const n of mt.nodes) {
      const pid = ((await n.client.request("GET", "/v1/encryption")) as EncryptionStatus).tunnel?.pid;
      if (pid !== undefined) mtPids.push(pid);
    }
    const wgPids = wg
      ? pidsIn(
          wg.nodes.map((n) => n.netns),
          (c) => c === "wireguard-go",
        )
      : [];
    const modes: Mode[] = ["plaintext", "mtls-tunnel", "mtls-tunnel-strict", ...(wg ? ["wireguard-go" as const] : [])]; // prettier-ignore
    const windows: Win[] = [];
    for (let round = 0; round < rounds; round++) {
      // Rotating order: each mode runs in every position once per `modes.length` rounds.
      const order = modes.map((_, i) => modes[(i + round) % modes.length] as Mode);
      for (const mode of order) {
        if (mode !== "wireguard-go") await table(mode);
        const p = mode === "wireguard-go" && wg ? wg : mt;
        const m = await measure(
          p.client.netns,
          p.server.ipv4,
          seconds,
          mode === "wireguard-go" ? wgPids : mtPids,
        );
        windows.push({ mode, round, ...m });
        process.stderr.write(
          `round ${round} ${mode}: ${m.gbps} Gbit/s (${m.retransmits} retransmits), ${m.rrPerSec} rr/s, ${m.cpuSecPerGbit} CPU-s/Gbit (load ${m.load1m})\n`,
        );
      }
    }
    await table("mtls-tunnel"); // the lab's own table again (it is stopped next)
    const med = (m: Mode, f: (w: Win) => number): number =>
      median(windows.filter((w) => w.mode === m).map(f));
    const pct = (a: number, b: number): number => Math.round((1 - b / a) * 1000) / 10;
    const st = (await (mt.nodes[0] as LabNode).client.request("GET", "/v1/encryption")) as EncryptionStatus;
    console.log(
      JSON.stringify({
        bench: "encryption",
        mode: "mtls-tunnel",
        seconds,
        rounds,
        median: Object.fromEntries(
          modes.map((m) => [
            m,
            { gbps: med(m, (w) => w.gbps), rrPerSec: med(m, (w) => w.rrPerSec), cpuSecPerGbit: med(m, (w) => w.cpuSecPerGbit) }, // prettier-ignore
          ]),
        ),
        tunnelVsWireguardGo: wg ? Math.round((med("mtls-tunnel", (w) => w.gbps) / med("wireguard-go", (w) => w.gbps)) * 100) / 100 : undefined, // prettier-ignore
        strictCostPct: {
          gbps: pct(
            med("mtls-tunnel", (w) => w.gbps),
            med("mtls-tunnel-strict", (w) => w.gbps),
          ),
          rr: pct(
            med("mtls-tunnel", (w) => w.rrPerSec),
            med("mtls-tunnel-strict", (w) => w.rrPerSec),
          ),
        },
        tunnelStreams: st.peers[0]?.tunnel?.streamsTotal ?? 0,
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
    for (const l of labs.reverse()) await l.stop();
  }
}

await main();
