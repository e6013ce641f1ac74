/**
 * Traffic between two endpoint namespaces, for the kernel-path benchmarks
 * (datapath.ts, scale.ts): TCP throughput (iperf3) and request/response rate
 * (a Node ping-pong, 1-byte messages, TCP_NODELAY), with conditions in ABBA
 * order in the same run, client and server pinned to CPUs (defaultPin), and the
 * ratio of each round's adjacent pair of windows (traffic-stats.ts). Each window
 * also records the CPU both ends used, per byte and per round trip: on a shared
 * machine the wall-clock rates swing with other processes, the CPU cost less.
 *
 *   node dist/bench/traffic.js --rr-server            (run inside the server's namespace)
 *   node dist/bench/traffic.js --rr-client HOST MS    (inside the client's; prints one JSON line)
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import net from "node:net";
import { availableParallelism, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { benchArgs, flag } from "./cli.js";
import { runRaw } from "../src/datapath/exec.js";
import { median, pairRatios, r1, ratioSummary, roundOrder, spreadPct, type Window } from "./traffic-stats.js";

export { median, pct, r1 } from "./traffic-stats.js";
export type { Window } from "./traffic-stats.js";

export const RR_PORT = 5300;
export const IPERF_PORT = 5201;

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
export const has = (bin: string): boolean => spawnSync("sh", ["-c", `command -v ${bin}`]).status === 0;

const self = fileURLToPath(import.meta.url);
const cpuUs = (): number => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Echoes each byte; prints the CPU (µs) it used for each connection when it closes. */
function rrServer(): void {
  net
    .createServer((s) => {
      const t0 = cpuUs();
      s.setNoDelay(true);
      s.on("data", (d) => s.write(d));
      s.on("error", () => undefined);
      s.on("close", () => process.stdout.write(JSON.stringify({ cpuUs: cpuUs() - t0 }) + "\n"));
    })
    .listen(RR_PORT, "0.0.0.0", () => process.stdout.write("ready\n"));
}

interface RrResult {
  roundTrips: number;
  perSec: number;
  /** CPU µs of the client over the window. */
  cpuUs: number;
}

function rrClient(host: string, ms: number): void {
  const s = net.connect({ host, port: RR_PORT }, () => {
    s.setNoDelay(true);
    let n = 0;
    const t0 = cpuUs();
    const end = performance.now() + ms;
    s.on("data", () => {
      n++;
      if (performance.now() < end) s.write("x");
      else {
        const r: RrResult = { roundTrips: n, perSec: n / (ms / 1000), cpuUs: cpuUs() - t0 };
        process.stdout.write(JSON.stringify(r) + "\n");
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
  /** The conditions of a round ("none" first, then "membrane"); odd rounds run them in reverse (ABBA). */
  readonly conditions: readonly string[];
  /** Puts the datapath in `cond` before its measurement. */
  readonly setCondition: (cond: string) => Promise<void>;
  /** Waits, after setCondition and before each window of either condition, e.g. for the agent to be idle. */
  readonly settle?: (cond: string) => Promise<void>;
  /** Checks, after each window, that the datapath stayed in `cond` throughout (throws if not). */
  readonly check?: (cond: string) => Promise<void>;
  /** CPUs the client and the server are pinned to (taskset), or none. Default: defaultPin(). */
  readonly pin?: Pin | undefined;
  /**
   * CPU ms of this process (the agent runs in it) above which a window is taken again: the
   * agent worked during it. Undefined: every window counts.
   */
  readonly agentBusyMs?: number;
}

/** A window taken again because the agent was busy in it (the figure line lists them). */
export interface Retaken {
  readonly round: number;
  readonly cond: string;
  readonly agentCpuMs: number;
}

/** Client and server CPUs. */
export interface Pin {
  readonly client: number;
  readonly server: number;
}

/**
 * Client on CPU 0, server on the last CPU: a veth delivers in the sender's softirq, so each
 * direction's kernel work (conntrack, nftables) then runs on its sender's CPU, and the same
 * in every window. Unpinned, the scheduler may put both ends on one CPU in one window and
 * on two in the next, and a ping-pong's rate differs by up to 2x between the two (a likely
 * cause of the 14,938..28,654/s spread within one condition seen before; not measured on
 * a quiet machine yet: `--pin=none` compares).
 */
export function defaultPin(): Pin | undefined {
  const n = availableParallelism();
  return n >= 2 ? { client: 0, server: n - 1 } : undefined;
}

/** `--pin=C,S` or `--pin=none` (bench flags). */
export function parsePin(arg: string | undefined): Pin | undefined {
  if (arg === undefined) return defaultPin();
  if (arg === "none") return undefined;
  const m = /^(\d+),(\d+)$/.exec(arg);
  const n = availableParallelism();
  if (!m || Number(m[1]) >= n || Number(m[2]) >= n)
    throw new Error(`--pin=${arg}: give two CPU numbers below ${n} (client,server), or none`);
  return { client: Number(m[1]), server: Number(m[2]) };
}

const pinned = (cpu: number | undefined, argv: readonly string[]): string[] =>
  cpu === undefined ? [...argv] : ["taskset", "-c", String(cpu), ...argv];

/** Lines of a child's stdout, one at a time. */
function lineReader(c: ChildProcess): () => Promise<string> {
  const lines: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  let buf = "";
  c.stdout?.on("data", (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  return () => {
    const l = lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("rr server: no answer")), 30_000);
      waiting.push((x) => {
        clearTimeout(t);
        resolve(x);
      });
    });
  };
}

interface IperfJson {
  end?: {
    sum_received?: { bits_per_second?: number; bytes?: number; seconds?: number };
    cpu_utilization_percent?: { host_total?: number; remote_total?: number };
  };
}

/** Runs iperf3 (when installed) and the ping-pong in each condition, round by round in ABBA order. */
export async function abTraffic(
  p: AbParams,
): Promise<{ windows: Window[]; iperf: boolean; retaken: Retaken[]; pin?: Pin }> {
  const children: ChildProcess[] = [];
  const iperf = has("iperf3");
  const pin = "pin" in p ? p.pin : defaultPin();
  const retaken: Retaken[] = [];
  try {
    const rr = spawn(
      "ip",
      ["netns", "exec", p.server.netns, ...pinned(pin?.server, [process.execPath, self, "--rr-server"])],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    children.push(rr);
    const rrLine = lineReader(rr);
    if ((await rrLine()) !== "ready") throw new Error("rr server did not start");
    if (iperf) {
      const argv = pinned(pin?.server, ["iperf3", "-s", "-p", String(IPERF_PORT)]);
      children.push(spawn("ip", ["netns", "exec", p.server.netns, ...argv], { stdio: "ignore" }));
      await new Promise((r) => setTimeout(r, 500));
    }
    /** One window of `cond`: iperf3, then the ping-pong, and the CPU the agent used meanwhile. */
    const measure = async (): Promise<Omit<Window, "round" | "cond">> => {
      const cpu0 = process.cpuUsage();
      let gbps: number | undefined;
      let cpuSecPerGB: number | undefined;
      if (iperf) {
        // The first second (slow start, the congestion window's ramp) is not the steady state the
        // figure is about, and it is where two windows of one condition differ most: omitted (-O)
        // from windows long enough to keep two seconds after it.
        const omit = p.seconds >= 3 ? ["-O", "1"] : [];
        const argv = [
          "iperf3",
          "-c",
          p.server.ip,
          "-p",
          String(IPERF_PORT),
          "-t",
          String(p.seconds),
          ...omit,
          "-J",
        ];
        const r = await runRaw(pinned(pin?.client, argv), {
          netns: p.client.netns,
          timeoutMs: (p.seconds + 21) * 1000,
        });
        const j = JSON.parse(r.stdout || "{}") as IperfJson;
        const sum = j.end?.sum_received;
        const cpu = j.end?.cpu_utilization_percent;
        if (sum?.bits_per_second === undefined)
          throw new Error(`iperf3 failed: ${r.stderr || r.stdout.slice(0, 300)}`);
        gbps = sum.bits_per_second / 1e9;
        // iperf3's CPU figures are each end's getrusage over the test, in % of its duration.
        if (cpu?.host_total !== undefined && cpu.remote_total !== undefined && sum.bytes && sum.seconds)
          cpuSecPerGB = (((cpu.host_total + cpu.remote_total) / 100) * sum.seconds) / (sum.bytes / 1e9);
      }
      const c = await runRaw(
        pinned(pin?.client, [process.execPath, self, "--rr-client", p.server.ip, String(p.seconds * 1000)]),
        { netns: p.client.netns, timeoutMs: (p.seconds + 20) * 1000 },
      );
      const j = JSON.parse(c.stdout.trim() || "{}") as RrResult & { error?: string };
      if (j.perSec === undefined) throw new Error(`rr client failed: ${j.error ?? c.stderr}`);
      const srv = JSON.parse(await rrLine()) as { cpuUs: number };
      const agent = process.cpuUsage(cpu0);
      return {
        ...(gbps !== undefined ? { gbps } : {}),
        ...(cpuSecPerGB !== undefined ? { cpuSecPerGB } : {}),
        rr: j.perSec,
        cpuUsPerRt: (j.cpuUs + srv.cpuUs) / j.roundTrips,
        agentCpuMs: (agent.user + agent.system) / 1000,
        load1m: r1(loadavg()[0] ?? 0),
      };
    };
    const windows: Window[] = [];
    for (let round = 0; round < p.rounds; round++) {
      for (const cond of roundOrder(p.conditions, round)) {
        for (let attempt = 1; ; attempt++) {
          await p.setCondition(cond);
          await p.settle?.(cond);
          const w = await measure();
          await p.check?.(cond);
          // The agent is to be idle in both conditions (it shares the two CPUs with the traffic):
          // a window in which it worked anyway (a periodic job, a collection) measured that work,
          // not the datapath, and is taken again, at most twice. Both conditions alike.
          const busy = p.agentBusyMs !== undefined && w.agentCpuMs > p.agentBusyMs;
          if (!busy || attempt >= 3) {
            windows.push({ round, cond, ...w, ...(attempt > 1 ? { attempts: attempt } : {}) });
            break;
          }
          retaken.push({ round, cond, agentCpuMs: Math.round(w.agentCpuMs) });
        }
      }
    }
    return { windows, iperf, retaken, ...(pin ? { pin } : {}) };
  } finally {
    for (const c of children) c.kill();
  }
}

/** The two figures (throughput, request/response) of condition `b` against `a`, as JSON-ready records. */
export function trafficFigures(
  r: { windows: readonly Window[]; iperf: boolean; retaken?: readonly Retaken[]; pin?: Pin },
  a: string,
  b: string,
  common: Record<string, unknown>,
): Record<string, unknown>[] {
  const of = (cond: string) => r.windows.filter((w) => w.cond === cond);
  const [wa, wb] = [of(a), of(b)];
  const agentCpu = (ws: readonly Window[]) => ws.map((w) => Math.round(w.agentCpuMs));
  const shared = {
    ...common,
    order: "ABBA: pairs are the two adjacent windows of a round; ratio = median of the pair ratios",
    pinned: r.pin ? `client CPU ${r.pin.client}, server CPU ${r.pin.server}` : "no",
    agentCpuMsNone: agentCpu(wa),
    agentCpuMsMembrane: agentCpu(wb),
    loadPerWindow: r.windows.map((w) => w.load1m),
    ...(r.retaken ? { retakenAgentBusy: r.retaken } : {}),
  };
  const out: Record<string, unknown>[] = [];
  if (r.iperf) {
    const t = ratioSummary(pairRatios(r.windows, a, b, (w) => w.gbps));
    const cpu = ratioSummary(pairRatios(r.windows, a, b, (w) => w.cpuSecPerGB, false));
    const g = (ws: readonly Window[]) => ws.map((w) => w.gbps ?? NaN);
    out.push({
      figure: "tcp-throughput",
      tool: "iperf3",
      ...shared,
      gbitPerSecNone: r1(median(g(wa))),
      gbitPerSecMembrane: r1(median(g(wb))),
      ratio: t.ratio,
      ratioSpread: t.spread,
      pairRatios: t.pairs,
      target: ">= 0.95",
      ok: t.ratio >= 0.95,
      spreadPctNone: spreadPct(g(wa)),
      spreadPctMembrane: spreadPct(g(wb)),
      samplesNone: g(wa).map(r1),
      samplesMembrane: g(wb).map(r1),
      // Bytes per CPU-second of both ends, membrane / none: the cost per byte, robust to load.
      cpuRatio: cpu.ratio,
      cpuRatioSpread: cpu.spread,
      cpuSecPerGBNone: r3(median(wa.map((w) => w.cpuSecPerGB ?? NaN))),
      cpuSecPerGBMembrane: r3(median(wb.map((w) => w.cpuSecPerGB ?? NaN))),
    });
  } else out.push({ figure: "tcp-throughput", skipped: "iperf3 not installed (apt-get install -y iperf3)" });
  const q = ratioSummary(pairRatios(r.windows, a, b, (w) => w.rr));
  const qc = ratioSummary(pairRatios(r.windows, a, b, (w) => w.cpuUsPerRt, false));
  const rr = (ws: readonly Window[]) => ws.map((w) => w.rr);
  out.push({
    figure: "tcp-request-response",
    tool: "node ping-pong, 1 byte, TCP_NODELAY",
    ...shared,
    perSecNone: Math.round(median(rr(wa))),
    perSecMembrane: Math.round(median(rr(wb))),
    ratio: q.ratio,
    ratioSpread: q.spread,
    pairRatios: q.pairs,
    target: ">= 0.90",
    ok: q.ratio >= 0.9,
    spreadPctNone: spreadPct(rr(wa)),
    spreadPctMembrane: spreadPct(rr(wb)),
    samplesNone: rr(wa).map(Math.round),
    samplesMembrane: rr(wb).map(Math.round),
    // Round trips per CPU-second of both ends, membrane / none.
    cpuRatio: qc.ratio,
    cpuRatioSpread: qc.spread,
    cpuUsPerRoundTripNone: r1(median(wa.map((w) => w.cpuUsPerRt))),
    cpuUsPerRoundTripMembrane: r1(median(wb.map((w) => w.cpuUsPerRt))),
  });
  return out;
}

if (process.argv[1] === self) {
  const { flags, args } = benchArgs({
    script: "traffic",
    measures: "Not a benchmark of its own: the request/response ping-pong the traffic figures use (datapath, scale, lb, encryption), run by them inside endpoint namespaces. --rr-server serves 1-byte messages; --rr-client HOST MS sends them for MS ms and prints one JSON line.", // prettier-ignore
    root: false,
    args: { usage: "[HOST MS]", help: "with --rr-client: the server's address and how long", min: 0, max: 2 },
    flags: {
      "rr-server": flag("serve the ping-pong"),
      "rr-client": flag("run the ping-pong against HOST for MS ms"),
    },
  });
  if (flags["rr-server"]) rrServer();
  else if (flags["rr-client"]) rrClient(args[0] ?? "", Number(args[1] ?? 5000));
  else {
    process.stderr.write("Cannot run traffic: give --rr-server or --rr-client HOST MS (see --help)\n");
    process.exit(2);
  }
}
