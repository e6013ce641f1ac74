/**
 * One measurement window of the encryption benchmark (encryption.ts, the only place that measures),
 * pod to pod between two lab nodes:
 *   - TCP throughput (iperf3, one stream; the server must listen on 5201);
 *   - request/response rate (traffic.ts's Node ping-pong, 1-byte messages, TCP_NODELAY; its
 *     `--rr-server` must run in the server's namespace);
 *   - CPU per Gbit: CPU-seconds of both iperf3 ends (their own getrusage) plus the tunnel's
 *     processes (wireguard-go, charon, the mTLS tunnel: /proc/<pid>/stat over the iperf3 run) per
 *     Gbit received. The kernel's softirq work outside these processes is not counted (on a shared
 *     machine it cannot be told apart from other users');
 *   - UDP datagrams the nodes dropped for a full socket buffer meanwhile (a userspace tunnel not
 *     reading fast enough), and the 1-minute load average at the window's end.
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

/** CPU seconds (user + system, every thread) the processes used so far. */
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

/** UdpRcvbufErrors + UdpSndbufErrors of the namespaces (nstat, absolute). */
export async function udpBufErrors(netns: readonly string[]): Promise<number> {
  let n = 0;
  for (const ns of netns) {
    const r = await runRaw(["nstat", "-asz", "UdpRcvbufErrors", "UdpSndbufErrors"], { netns: ns });
    for (const line of r.stdout.split("\n")) n += Number(line.trim().split(/\s+/)[1] ?? 0) || 0;
  }
  return n;
}

export interface Measured {
  gbps: number;
  retransmits: number;
  rrPerSec: number;
  cpuSecPerGbit: number;
  /** CPU-seconds of the tunnel's processes during the iperf3 run. */
  tunnelCpuSec: number;
  /** UDP datagrams the nodes dropped for a full socket buffer during the iperf3 run. */
  udpBufDrops: number;
  load1m: number;
  /** What `count` (measure's third argument) grew by during the iperf3 run. */
  counted?: number;
}

export interface WindowTarget {
  /** The client pod's namespace (iperf3 -c and the ping-pong client run there). */
  readonly clientNetns: string;
  readonly serverIp: string;
  /** The tunnel's processes (CPU counted per Gbit). */
  readonly tunnelPids: readonly number[];
  /** The node namespaces (their UDP buffer drops counted). */
  readonly nodeNetns: readonly string[];
}

interface IperfJson {
  end: {
    sum_received: { bits_per_second: number; bytes: number; seconds: number };
    sum_sent: { retransmits?: number };
    cpu_utilization_percent: { host_total: number; remote_total: number };
  };
}

/**
 * iperf3 then the ping-pong from the client pod to the server pod, `seconds` each; `count` (a
 * kernel counter, say) is read around the iperf3 run.
 */
export async function measure(
  t: WindowTarget,
  seconds: number,
  count?: () => Promise<number>,
): Promise<Measured> {
  const c0 = count ? await count() : 0;
  const t0 = cpuSeconds(t.tunnelPids);
  const udp0 = await udpBufErrors(t.nodeNetns);
  const out = await sh(t.clientNetns, [
    "iperf3",
    "-c",
    t.serverIp,
    "-p",
    "5201",
    "-t",
    String(seconds),
    "-J",
  ]);
  const tunnelCpuSec = cpuSeconds(t.tunnelPids) - t0;
  const counted = count ? (await count()) - c0 : undefined;
  const udpBufDrops = (await udpBufErrors(t.nodeNetns)) - udp0;
  const j = JSON.parse(out) as IperfJson;
  const sum = j.end.sum_received;
  const cpu = j.end.cpu_utilization_percent;
  const endsCpuSec = ((cpu.host_total + cpu.remote_total) / 100) * sum.seconds;
  const gbits = (sum.bytes * 8) / 1e9;
  const rrRun = await sh(t.clientNetns, [process.execPath, TRAFFIC, "--rr-client", t.serverIp, String(seconds * 1000)]); // prettier-ignore
  const rr = JSON.parse(rrRun.trim()) as { perSec?: number; error?: string };
  if (rr.perSec === undefined) throw new Error(`rr client: ${rr.error ?? rrRun}`);
  return {
    gbps: Math.round(sum.bits_per_second / 1e6) / 1000, // 3 decimals: WireGuard here is ~0.25 (pair ratios)
    retransmits: j.end.sum_sent.retransmits ?? 0,
    rrPerSec: Math.round(rr.perSec),
    cpuSecPerGbit: Math.round(((endsCpuSec + tunnelCpuSec) / gbits) * 1000) / 1000,
    tunnelCpuSec: r1(tunnelCpuSec),
    udpBufDrops,
    load1m: r1(loadavg()[0] ?? 0),
    ...(counted !== undefined ? { counted } : {}),
  };
}
