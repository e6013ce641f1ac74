/**
 * The gateway benchmark (issue 16 item 8): Membrane's Gateway API gateway
 * against Debian's nginx configured for the same routes, same run, rounds
 * interleaved, on loopback.
 *
 *   npm run bench -- gateway          node dist/bench/gateway.js [--rounds 5] [--seconds 2]
 *
 *   load.js (own process) --> direct:    upstream (this process)
 *                         --> membrane:  gateway-server.js (own process, the proxy's node flags) --> upstream
 *                         --> membraneStream: the same with MEMBRANE_PROXY_IO=stream (Node's streams
 *                                             instead of the native socket I/O add-on: the before/after)
 *                         --> nginx1:    nginx, worker_processes 1, the same routes --> upstream
 *                         --> nginxAuto: nginx, worker_processes auto
 *
 * Routes on both (gateway-server.ts has the HTTPRoute): host svc, /static and
 * a header-matched /api rule to pass over, PathPrefix /api with a request
 * header added and X-Forwarded-For/-Proto set. Phases as the proxy bench:
 * "moderate" (open loop, 2,000 requests/s over 8 keep-alive connections) and
 * "saturation" (closed loop, 16 connections). A saturation warm-up per target, twice (REWARM_MS
 * says why). Each round runs every target
 * once per phase in an order rotated per round; figures are medians over
 * rounds, added latency is paired per round. The load average is recorded.
 * Requests per CPU-second (the gateway's or nginx workers' CPU) are the figure
 * least moved by the other load on the machine.
 */
import type { ChildProcess } from "node:child_process";
import net from "node:net";
import type { AddressInfo } from "node:net";
import os from "node:os";
import { PROXY_NODE_FLAGS } from "../src/proxy/runtime/node-flags.js";
import type { LoadResult, LoadSpec } from "./load.js";
import { findNginx, startNginx, type Nginx } from "./nginx.js";
import { cpuSeconds, forkReady, Rpc, startUpstream, stopChild, type Closable } from "./proxy-procs.js";
import { summarisePhase, type PhaseSamples, type Sample } from "./proxy-report.js";
import { benchArgs, int, num } from "./cli.js";

const MODERATE = { rate: 2000, connections: 8 } as const;
const SATURATION = { connections: 16 } as const;
const WARMUP_MS = 3000;
/**
 * A second warm-up, after the first has ended its connections. The first end of a connection a
 * target ever sees changes fields of the socket I/O's objects that until then never changed
 * (native-io.ts NativeConn's end-of-stream state, such as `eof`: V8 had taken them as constants),
 * and V8 throws away every optimized function that relied on that (`--trace-deopt`: onEvent, readOnce,
 * forwardH1, send, data, finish, ... "code dependencies"). Without this second warm-up the first
 * moderate round then ran while they were optimized again at 2,000 requests/s, and its added p99
 * was 2-3 ms where the later rounds gave 0.4-0.9. It is a once-per-process cost, not one per
 * round: a gateway in service has seen connections end within its first seconds, and the rounds'
 * own connection ends changed nothing any more (no deopt after the first). nginx is not affected.
 */
const REWARM_MS = 2000;

/** nginx's server block for the routes of gateway-server.ts. */
const NGINX_ROUTES = `server_name svc;
    location /static/ { return 500; }
    location /api {
      if ($http_x_canary = "1") { return 500; }
      proxy_pass http://bench_upstream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Gateway membrane;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
    location / { return 404; }`;

interface Target {
  readonly name: string;
  readonly port: number;
  readonly pids: () => number[];
}

type Phase = "moderate" | "saturation";

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Requests per CPU-second of the process under test (0 when it used none: one sample is never zero CPU). */
function perCpuSecond(s: Sample | undefined): number {
  if (!s || !s.proxyCpuPct) return 0;
  return s.perSecond / (s.proxyCpuPct / 100);
}

const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length] as T);
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : (s[Math.floor((s.length - 1) / 2)] ?? 0);
};

export async function runGatewayBench(rounds: number, phaseMs: number): Promise<Record<string, unknown>> {
  let upstream: Closable | undefined;
  let gateway: ChildProcess | undefined;
  let gatewayStream: ChildProcess | undefined;
  let loader: ChildProcess | undefined;
  const nginxes: Nginx[] = [];
  const load0 = os.loadavg();
  try {
    upstream = await startUpstream();
    const g = await forkReady<{ port: number }>(
      "./gateway-server.js",
      [String(upstream.port), String(await freePort())],
      PROXY_NODE_FLAGS,
    );
    gateway = g.child;
    const gwPid = g.child.pid ?? 0;
    const gs = await forkReady<{ port: number }>(
      "./gateway-server.js",
      [String(upstream.port), String(await freePort())],
      PROXY_NODE_FLAGS,
      { MEMBRANE_PROXY_IO: "stream" },
    );
    gatewayStream = gs.child;
    const gsPid = gs.child.pid ?? 0;
    const l = await forkReady<unknown>("./load.js", []);
    loader = l.child;
    const rpc = new Rpc<LoadSpec, LoadResult>(l.child);
    const targets: Target[] = [
      { name: "direct", port: upstream.port, pids: () => [] },
      { name: "membrane", port: g.ready.port, pids: () => [gwPid] },
      { name: "membraneStream", port: gs.ready.port, pids: () => [gsPid] },
    ];
    const nginx = findNginx();
    if (nginx)
      for (const [name, workers] of [
        ["nginx1", 1],
        ["nginxAuto", "auto"],
      ] as const) {
        const n = await startNginx({ ...nginx, workers, upstreamPort: upstream.port, server: NGINX_ROUTES });
        nginxes.push(n);
        targets.push({ name, port: n.port, pids: () => n.workerPids() });
      }
    const run = async (t: Target, phase: Phase, durationMs: number): Promise<Sample> => {
      const pids = t.pids();
      const cpu0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const up0 = process.cpuUsage();
      const t0 = performance.now();
      const shape = phase === "moderate" ? MODERATE : SATURATION;
      const r = await rpc.call({ kind: "http", port: t.port, durationMs, ...shape });
      const sec = (performance.now() - t0) / 1000;
      const up = process.cpuUsage(up0);
      const cpu1 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      return {
        ...r,
        proxyCpuPct: Math.round(((cpu1 - cpu0) / sec) * 100),
        upstreamCpuPct: Math.round(((up.user + up.system) / 1e6 / sec) * 100),
      };
    };
    for (const t of targets) await run(t, "saturation", WARMUP_MS);
    for (const t of targets) await run(t, "saturation", REWARM_MS);
    const samples: Record<Phase, PhaseSamples> = { moderate: {}, saturation: {} };
    for (let r = 0; r < rounds; r++)
      for (const phase of ["moderate", "saturation"] as const)
        for (const t of rotate(targets, r))
          (samples[phase][t.name] ??= []).push(await run(t, phase, phaseMs));
    const added = (name: string): number =>
      median(
        (samples.moderate[name] ?? []).map((s, i) => s.p99Ms - (samples.moderate["direct"]?.[i]?.p99Ms ?? 0)),
      );
    const ratio = (ng: string): number | null =>
      samples.saturation[ng]
        ? +median(
            (samples.saturation["membrane"] ?? []).map((s, i) => s.perSecond / (samples.saturation[ng]?.[i]?.perSecond ?? 1)),
          ).toFixed(3)
        : null; // prettier-ignore
    const gwAdded = +added("membrane").toFixed(3);
    // Paired per round, saturation phase: requests per CPU-second of a / of b.
    const perCpu = (a: string, b: string): number | null =>
      samples.saturation[b]
        ? +median(
            (samples.saturation[a] ?? []).map((s, i) => perCpuSecond(s) / perCpuSecond(samples.saturation[b]?.[i])),
          ).toFixed(3)
        : null; // prettier-ignore
    return {
      bench: "gateway",
      setup: {
        rounds,
        phaseMs,
        cpus: os.cpus().length,
        node: process.version,
        loadAverage: { start: load0.map((x) => +x.toFixed(2)), end: os.loadavg().map((x) => +x.toFixed(2)) },
        routes:
          "host svc; /static and a header-matched /api passed over; PathPrefix /api + a request header + X-Forwarded-*",
        nginx: nginx ? nginx.version : "not installed: run scripts/install-system-deps.sh",
      },
      targets: [
        { name: "gateway added p99 at moderate load (ms)", target: "< 1", value: gwAdded, pass: gwAdded < 1 },
        ...(["nginx1", "nginxAuto"] as const).map((ng) => {
          const v = ratio(ng);
          return {
            name: `gateway requests/s at saturation / ${ng}`,
            target: ">= 0.6",
            value: v,
            pass: v === null ? null : v >= 0.6,
          };
        }),
      ],
      perCpuSecond: {
        "membrane / nginx1": perCpu("membrane", "nginx1"),
        "membrane / membraneStream": perCpu("membrane", "membraneStream"),
        "membraneStream / nginx1": perCpu("membraneStream", "nginx1"),
      },
      moderate: summarisePhase(samples.moderate),
      saturation: summarisePhase(samples.saturation),
    };
  } finally {
    await Promise.all(nginxes.map((n) => n.stop()));
    await stopChild(loader);
    await stopChild(gateway);
    await stopChild(gatewayStream);
    await upstream?.close();
  }
}

if (process.argv[1]?.endsWith("/gateway.js")) {
  const { flags } = benchArgs({
    script: "gateway",
    runner: "gateway",
    measures: "Membrane's Gateway API gateway vs nginx configured for the same routes, on loopback, same run, rounds interleaved: requests/s and added p50/p99 at a moderate open-loop rate and at saturation, with each process's CPU. One JSON line, with the load.", // prettier-ignore
    root: false,
    notes: [
      "Needs Debian's nginx (scripts/install-system-deps.sh); without it, the nginx targets are skipped.",
    ],
    flags: {
      rounds: int({ help: "rounds (each runs every target once per phase)", min: 1, max: 100, default: 5 }),
      seconds: num({ help: "seconds per phase and target", min: 0.1, max: 600, default: 2 }),
    },
  });
  runGatewayBench(flags.rounds, flags.seconds * 1000).then(
    (r) => console.log(JSON.stringify(r)),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
