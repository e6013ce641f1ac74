/**
 * One measurement window of the encryption benchmarks (encryption.ts, mtls-tunnel.ts), pod to pod
 * between two lab nodes:
 *   - TCP throughput (iperf3, one stream; the server must listen on 5201);
 *   - request/response rate (traffic.ts's Node ping-pong, 1-byte messages, TCP_NODELAY; its
 *     `--rr-server` must run in the server's namespace);
 *   - CPU per Gbit: CPU-seconds of both iperf3 ends (their own getrusage) plus the tunnel's
 *     processes (wireguard-go, charon, the mTLS tunnel: /proc/<pid>/stat over the iperf3 run) per
 *     Gbit received. The kernel's softirq work outside these processes is not counted (on a shared
 *     machine it cannot be told apart from other users').
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { runRaw } from "../src/datapath/exec.js";
import { r1 } from "./traffic-stats.js";

export const TRAFFIC = fileURLToPath(new URL("./traffic.js", import.meta.url));
const TICK = 100; // USER_HZ: /proc/<pid>/stat counts CPU in 1/100 s

export async function sh(netns: string, argv: string[]): Promise<string> {
  const r = await runRaw(argv, { netns, timeoutMs: 120_000 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")} in ${netns}: ${r.stderr}`);
  return r.stdout;
}

/** Processes whose command name passes `isTunnel`, in the named namespaces. */
export function pidsIn(netns: readonly string[], isTunnel: (comm: string) => boolean): number[] {
  const inodes = new Set(netns.map((n) => statSync(`/run/netns/${n}`).ino));
  const out: number[] = [];
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      if (!isTunnel(readFileSync(`/proc/${pid}/comm`, "utf8").trim())) continue;
      if (inodes.has(statSync(`/proc/${pid}/ns/net`).ino)) out.push(Number(pid));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** CPU seconds (user + system) the processes used so far. */
export function cpuSeconds(pids: readonly number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command's closing parenthesis: utime is the 12th, stime the 13th.
      const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
      ticks += Number(f[11]) + Number(f[12]);
    } catch {
      /* exited */
    }
  }
  return ticks / TICK;
}

export interface Measured {
  gbps: number;
  retransmits: number;
  rrPerSec: number;
  cpuSecPerGbit: number;
  /** CPU-seconds of the tunnel's processes during the iperf3 run. */
  tunnelCpuSec: number;
  load1m: number;
}

/** iperf3 then the ping-pong from `clientNetns` to `serverIp`, `seconds` each. */
export async function measure(
  clientNetns: string,
  serverIp: string,
  seconds: number,
  tunnelPids: readonly number[],
): Promise<Measured> {
  const t0 = cpuSeconds(tunnelPids);
  const out = await sh(clientNetns, ["iperf3", "-c", serverIp, "-p", "5201", "-t", String(seconds), "-J"]);
  const tunnelCpuSec = cpuSeconds(tunnelPids) - t0;
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
  const rrRun = await sh(clientNetns, [
    process.execPath,
    TRAFFIC,
    "--rr-client",
    serverIp,
    String(seconds * 1000),
  ]);
  const rr = JSON.parse(rrRun.trim()) as { perSec?: number; error?: string };
  if (rr.perSec === undefined) throw new Error(`rr client: ${rr.error ?? rrRun}`);
  return {
    gbps: Math.round(sum.bits_per_second / 1e7) / 100,
    retransmits: j.end.sum_sent.retransmits ?? 0,
    rrPerSec: Math.round(rr.perSec),
    cpuSecPerGbit: Math.round(((endsCpuSec + tunnelCpuSec) / gbits) * 1000) / 1000,
    tunnelCpuSec: r1(tunnelCpuSec),
    load1m: r1(loadavg()[0] ?? 0),
  };
}
