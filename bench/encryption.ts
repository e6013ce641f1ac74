/**
 * `npm run bench -- encryption`: TCP throughput between pods on two lab nodes, side by side in one
 * run: plaintext (native routes), the mode (WireGuard, or IPsec with --mode=ipsec), and the mode
 * with strict mode, interleaved rounds (iperf3 from Debian, root). One lab with `--encryption
 * <mode>`; the plaintext rounds swap
 * the routes to the peer's pod CIDR to native ones by hand and back (the agents run with
 * `--resync 0`, so nothing puts them back meanwhile); strict mode is the encryption table with and
 * without its strict chain. Prints one JSON line with the medians, every round and the load average.
 *
 * IPsec: charon's kernel-libipsec also routes each SA's selectors into ipsec0 through its own
 * table 220 (rule 220, ahead of main); plaintext rounds take that rule away and put it back.
 *
 *   npm run bench -- encryption [--mode=wireguard|ipsec] [--seconds=5] [--rounds=3]
 */
import { spawn } from "node:child_process";
import { loadavg } from "node:os";
import { runRaw } from "../src/datapath/exec.js";
import { startLabCluster, type LabNode } from "../src/lab/cluster.js";
import { createEndpoint, waitRemote } from "../src/lab/cluster-api.js";
import { applyEncryptTable } from "../src/encryption/strict.js";
import type { EncryptionStatus } from "../src/encryption/mode.js";

const arg = (name: string, def: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split("=")[1]) : def;
};
const seconds = arg("seconds", 5);
const rounds = arg("rounds", 3);
const enc = process.argv.includes("--mode=ipsec") ? "ipsec" : "wireguard";
type Mode = "plaintext" | "encrypted" | "encrypted-strict";

async function sh(netns: string, argv: string[]): Promise<string> {
  const r = await runRaw(argv, { netns, timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} in ${netns}: ${r.stderr}`);
  return r.stdout;
}

async function main(): Promise<void> {
  const prefix = (enc === "ipsec" ? "hipb" : "hwgb") + Math.random().toString(36).slice(2, 5);
  const lab = await startLabCluster({ prefix, nodes: 2, leaseTtl: 30, encryption: enc });
  const load0 = loadavg();
  const server = spawn("true");
  let iperf: ReturnType<typeof spawn> | undefined;
  try {
    const [n1, n2] = lab.nodes as [LabNode, LabNode];
    const c = await createEndpoint(n1, "client", { app: "client" });
    const s = await createEndpoint(n2, "server", { app: "server" });
    await waitRemote(n1, [s.ipv4]);
    await waitRemote(n2, [c.ipv4]);
    const st = new Map<LabNode, EncryptionStatus>();
    for (const n of [n1, n2])
      st.set(n, (await n.client.request("GET", "/v1/encryption")) as EncryptionStatus);
    const cidr = (ip: string): string => ip.replace(/\.\d+$/, ".0/24");
    const routes = async (mode: Mode): Promise<void> => {
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
    iperf = spawn("ip", ["netns", "exec", s.netns, "iperf3", "-s", "-p", "5201"], {
      stdio: "ignore",
      detached: true,
    });
    await new Promise((r) => setTimeout(r, 500));
    const results: { mode: Mode; round: number; gbps: number; retransmits: number }[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const mode of ["plaintext", "encrypted", "encrypted-strict"] as const) {
        await routes(mode);
        const out = await sh(c.netns, ["iperf3", "-c", s.ipv4, "-p", "5201", "-t", String(seconds), "-J"]);
        const j = JSON.parse(out) as {
          end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
        };
        results.push({
          mode,
          round,
          gbps: Math.round(j.end.sum_received.bits_per_second / 1e7) / 100,
          retransmits: j.end.sum_sent.retransmits ?? 0,
        });
        process.stderr.write(
          `round ${round} ${mode === "plaintext" ? mode : mode.replace("encrypted", enc)}: ${results.at(-1)?.gbps} Gbit/s\n`,
        );
      }
    }
    const median = (m: Mode): number => {
      const v = results
        .filter((r) => r.mode === m)
        .map((r) => r.gbps)
        .sort((a, b) => a - b);
      return v[Math.floor(v.length / 2)] ?? 0;
    };
    const impl = (st.get(n1) as EncryptionStatus).impl;
    console.log(
      JSON.stringify({
        bench: "encryption",
        mode: enc,
        impl,
        seconds,
        rounds,
        medianGbps: {
          plaintext: median("plaintext"),
          [enc]: median("encrypted"),
          [`${enc}-strict`]: median("encrypted-strict"),
        },
        strictCostPct: Math.round((1 - median("encrypted-strict") / median("encrypted")) * 1000) / 10,
        loadavg: {
          before: load0.map((x) => Math.round(x * 10) / 10),
          after: loadavg().map((x) => Math.round(x * 10) / 10),
        },
        results: results.map((r) => ({ ...r, mode: r.mode.replace("encrypted", enc) })),
      }),
    );
  } finally {
    if (iperf?.pid !== undefined) {
      try {
        process.kill(-iperf.pid, "SIGKILL");
      } catch {
        /* gone */
      }
    }
    server.kill();
    await lab.stop();
  }
}

await main();
