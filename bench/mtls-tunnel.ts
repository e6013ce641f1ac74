/**
 * `npm run bench -- mtls-tunnel`: TCP throughput between pods on two lab nodes, side by side in one
 * run: plaintext (native routes) and the mTLS node tunnel (TLS 1.3 + HTTP/2 CONNECT), interleaved
 * rounds (iperf3 from Debian, root). One lab with `--encryption mtls-tunnel`; the plaintext rounds
 * replace the encryption table with one without the redirect (the agents run with `--resync 0`),
 * the tunnel rounds put it back. `--wireguard`: a second lab with `--encryption wireguard` runs
 * beside it and its round is interleaved with the others (the target: the tunnel at least
 * matches wireguard-go here). Prints one JSON line with the medians, every round, the load.
 *
 *   npm run bench -- mtls-tunnel [--seconds=5] [--rounds=3] [--wireguard]
 */
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { runRaw } from "../src/datapath/exec.js";
import { startLabCluster, type LabNode } from "../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { applyEncryptTable } from "../src/encryption/strict.js";

const arg = (name: string, def: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split("=")[1]) : def;
};
const seconds = arg("seconds", 5);
const rounds = arg("rounds", 3);
type Mode = "plaintext" | "mtls-tunnel" | "wireguard";
const withWg = process.argv.includes("--wireguard");

async function sh(netns: string, argv: string[]): Promise<string> {
  const r = await runRaw(argv, { netns, timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} in ${netns}: ${r.stderr}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const prefix = "hmtb" + Math.random().toString(36).slice(2, 5);
  const lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: "mtls-tunnel" });
  const wgLab = withWg
    ? await startLabCluster({ prefix: prefix + "w", nodes: 2, leaseTtl: 30, encryption: "wireguard" }).catch(
        async (e: unknown) => {
          await lab.stop();
          throw e;
        },
      )
    : undefined;
  const load0 = loadavg();
  let iperf: ReturnType<typeof spawn> | undefined;
  let wgIperf: ReturnType<typeof spawn> | undefined;
  try {
    const [n1, n2] = lab.nodes as [LabNode, LabNode];
    const c = await createEndpoint(n1, "client", { app: "client" });
    const s = await createEndpoint(n2, "server", { app: "server" });
    await waitRemote(n1, [s.ipv4]);
    await waitRemote(n2, [c.ipv4]);
    const cidr = (ip: string): string => ip.replace(/\.\d+$/, ".0/24");
    const gw = (ip: string): string => ip.replace(/\.\d+$/, ".1");
    const table = async (mode: Mode): Promise<void> => {
      for (const [n, ip] of [
        [n1, c.ipv4],
        [n2, s.ipv4],
      ] as const) {
        await applyEncryptTable({
          netns: n.netns,
          ...(mode === "mtls-tunnel"
            ? { tunnel: { redirect4: gw(ip), port: 15006, clusterCidrs: ["10.200.0.0/16"] } }
            : {}),
          localCidrs: [cidr(ip)],
          logGroup: 1,
        });
      }
    };
    iperf = spawn("ip", ["netns", "exec", s.netns, "iperf3", "-s", "-p", "5201"], { stdio: "ignore", detached: true }); // prettier-ignore
    let wgPods: { c: string; s: string } | undefined;
    if (wgLab) {
      const [w1, w2] = wgLab.nodes as [LabNode, LabNode];
      const wc = await createEndpoint(w1, "client", { app: "client" });
      const ws = await createEndpoint(w2, "server", { app: "server" });
      await waitRemote(w1, [ws.ipv4]);
      await waitRemote(w2, [wc.ipv4]);
      wgIperf = spawn("ip", ["netns", "exec", ws.netns, "iperf3", "-s", "-p", "5201"], { stdio: "ignore", detached: true }); // prettier-ignore
      wgPods = { c: wc.netns, s: ws.ipv4 };
    }
    await new Promise((r) => setTimeout(r, 500));
    const results: { mode: Mode; round: number; gbps: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const mode of ["plaintext", "mtls-tunnel", ...(wgPods ? ["wireguard" as const] : [])] as const) {
        if (mode !== "wireguard") await table(mode);
        const [from, to] = mode === "wireguard" && wgPods ? [wgPods.c, wgPods.s] : [c.netns, s.ipv4];
        const out = await sh(from, ["iperf3", "-c", to, "-p", "5201", "-t", String(seconds), "-J"]);
        const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
        results.push({ mode, round, gbps: Math.round(j.end.sum_received.bits_per_second / 1e7) / 100 });
        process.stderr.write(`round ${round} ${mode}: ${results.at(-1)?.gbps} Gbit/s\n`);
      }
    }
    const median = (m: Mode): number => {
      const v = results.filter((r) => r.mode === m).map((r) => r.gbps).sort((a, b) => a - b); // prettier-ignore
      return v[Math.floor(v.length / 2)] ?? 0;
    };
    const st = (await n1.client.request("GET", "/v1/encryption")) as { peers: { streamsTotal: number }[] };
    console.log(
      JSON.stringify({
        bench: "mtls-tunnel",
        seconds,
        rounds,
        medianGbps: {
          plaintext: median("plaintext"),
          "mtls-tunnel": median("mtls-tunnel"),
          ...(wgPods ? { "wireguard-go": median("wireguard") } : {}),
        },
        tunnelStreams: st.peers[0]?.streamsTotal ?? 0,
        loadavg: {
          before: load0.map((x) => Math.round(x * 10) / 10),
          after: loadavg().map((x) => Math.round(x * 10) / 10),
        },
        results,
      }),
    );
  } finally {
    for (const p of [iperf, wgIperf]) {
      if (p?.pid === undefined) continue;
      try {
        process.kill(-p.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    await wgLab?.stop();
    await lab.stop();
  }
}

await main();
