/**
 * Traffic between two endpoint namespaces, for the kernel-path benchmarks
 * (datapath.ts, scale.ts): TCP throughput (iperf3) and request/response rate
 * (a Node ping-pong, 1-byte messages, TCP_NODELAY), with conditions
 * alternated A/B/A/B... in the same run; medians are compared.
 *
 *   node dist/bench/traffic.js --rr-server            (run inside the server's namespace)
 *   node dist/bench/traffic.js --rr-client HOST MS    (inside the client's; prints one JSON line)
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { fileURLToPath } from "node:url";
import { runRaw } from "../src/datapath/exec.js";

export const RR_PORT = 5300;
export const IPERF_PORT = 5201;

export function pct(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
}
export const median = (xs: readonly number[]): number => pct(xs, 0.5);
export const r1 = (x: number): number => Math.round(x * 10) / 10;
export const has = (bin: string): boolean => spawnSync("sh", ["-c", `command -v ${bin}`]).status === 0;

const self = fileURLToPath(import.meta.url);

function rrServer(): void {
  net
    .createServer((s) => {
      s.setNoDelay(true);
      s.on("data", (d) => s.write(d));
      s.on("error", () => undefined);
    })
    .listen(RR_PORT, "0.0.0.0", () => process.stdout.write("ready\n"));
}

function rrClient(host: string, ms: number): void {
  const s = net.connect({ host, port: RR_PORT }, () => {
    s.setNoDelay(true);
    let n = 0;
    const end = performance.now() + ms;
    s.on("data", () => {
      n++;
      if (performance.now() < end) s.write("x");
      else {
        process.stdout.write(JSON.stringify({ roundTrips: n, perSec: n / (ms / 1000) }) + "\n");
        s.destroy();
      }
    });
    s.write("x");
  });
  s.on("error", (e) => {
    process.stdout.write(JSON.stringify({ error: String(e) }) + "\n");
  });
}

/** Samples per condition: Gbit/s (iperf3) and round trips per second. */
export type TrafficSamples = Record<string, { gbps: number[]; rr: number[] }>;

export interface AbParams {
  readonly client: { readonly netns: string };
  readonly server: { readonly netns: string; readonly ip: string };
  readonly rounds: number;
  readonly seconds: number;
  /** The conditions, in the order each round runs them ("none" first, then "membrane", ...). */
  readonly conditions: readonly string[];
  /** Puts the datapath in `cond` before its measurement. */
  readonly setCondition: (cond: string) => Promise<void>;
}

/** Runs iperf3 (when installed) and the ping-pong in each condition, interleaved round by round. */
export async function abTraffic(p: AbParams): Promise<{ samples: TrafficSamples; iperf: boolean }> {
  const children: ChildProcess[] = [];
  const iperf = has("iperf3");
  try {
    const rr = spawn("ip", ["netns", "exec", p.server.netns, process.execPath, self, "--rr-server"], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(rr);
    await new Promise<void>((resolve) => rr.stdout?.once("data", () => resolve()));
    if (iperf) {
      children.push(
        spawn("ip", ["netns", "exec", p.server.netns, "iperf3", "-s", "-p", String(IPERF_PORT)], {
          stdio: "ignore",
        }),
      );
      await new Promise((r) => setTimeout(r, 500));
    }
    const samples: TrafficSamples = {};
    for (const c of p.conditions) samples[c] = { gbps: [], rr: [] };
    for (let round = 0; round < p.rounds; round++) {
      for (const cond of p.conditions) {
        const s = samples[cond] as { gbps: number[]; rr: number[] };
        await p.setCondition(cond);
        if (iperf) {
          const r = await runRaw(
            ["iperf3", "-c", p.server.ip, "-p", String(IPERF_PORT), "-t", String(p.seconds), "-J"],
            { netns: p.client.netns, timeoutMs: (p.seconds + 20) * 1000 },
          );
          const j = JSON.parse(r.stdout || "{}") as { end?: { sum_received?: { bits_per_second?: number } } };
          const bps = j.end?.sum_received?.bits_per_second;
          if (bps === undefined) throw new Error(`iperf3 failed: ${r.stderr || r.stdout.slice(0, 300)}`);
          s.gbps.push(bps / 1e9);
        }
        const c = await runRaw(
          [process.execPath, self, "--rr-client", p.server.ip, String(p.seconds * 1000)],
          { netns: p.client.netns, timeoutMs: (p.seconds + 20) * 1000 },
        );
        const j = JSON.parse(c.stdout.trim() || "{}") as { perSec?: number; error?: string };
        if (j.perSec === undefined) throw new Error(`rr client failed: ${j.error ?? c.stderr}`);
        s.rr.push(j.perSec);
      }
    }
    return { samples, iperf };
  } finally {
    for (const c of children) c.kill();
  }
}

/** The two figures (throughput, request/response) of condition `b` against `a`, as JSON-ready records. */
export function trafficFigures(
  r: { samples: TrafficSamples; iperf: boolean },
  a: string,
  b: string,
  common: Record<string, unknown>,
): Record<string, unknown>[] {
  const sa = r.samples[a] ?? { gbps: [], rr: [] };
  const sb = r.samples[b] ?? { gbps: [], rr: [] };
  const ratio = (x: number, y: number): number => Math.round((y / x) * 1000) / 1000;
  const out: Record<string, unknown>[] = [];
  if (r.iperf) {
    const t = ratio(median(sa.gbps), median(sb.gbps));
    out.push({
      figure: "tcp-throughput",
      tool: "iperf3",
      ...common,
      gbitPerSecNone: r1(median(sa.gbps)),
      gbitPerSecMembrane: r1(median(sb.gbps)),
      ratio: t,
      target: ">= 0.95",
      ok: t >= 0.95,
      samplesNone: sa.gbps.map(r1),
      samplesMembrane: sb.gbps.map(r1),
    });
  } else out.push({ figure: "tcp-throughput", skipped: "iperf3 not installed (apt-get install -y iperf3)" });
  const q = ratio(median(sa.rr), median(sb.rr));
  out.push({
    figure: "tcp-request-response",
    tool: "node ping-pong, 1 byte, TCP_NODELAY",
    ...common,
    perSecNone: Math.round(median(sa.rr)),
    perSecMembrane: Math.round(median(sb.rr)),
    ratio: q,
    target: ">= 0.90",
    ok: q >= 0.9,
    samplesNone: sa.rr.map(Math.round),
    samplesMembrane: sb.rr.map(Math.round),
  });
  return out;
}

if (process.argv[1] === self) {
  const argv = process.argv.slice(2);
  if (argv[0] === "--rr-server") rrServer();
  else if (argv[0] === "--rr-client") rrClient(argv[1] ?? "", Number(argv[2] ?? 5000));
}
