/**
 * Benchmark of the L7 proxies on loopback: the same load sent straight to
 * the server, through Membrane's proxy and through nginx, side by side.
 *
 *   node dist/bench/proxy.js [--rounds 5] [--seconds 2] [--workers N] [--baseline DIST] [--only dns]   -> one JSON line
 *
 *   load.js (own process) --> direct:    upstream (this process)
 *                         --> membrane:  proxy-server.js (own process) --> upstream
 *                         --> membraneStream: the same with MEMBRANE_PROXY_IO=stream: its sockets
 *                                      through Node's streams / dgram instead of the native addons
 *                         --> membraneWorkers: N proxy-server.js processes (default N = CPUs; the load's
 *                                      connections spread over their ports, as the kernel's numgen DNAT does)
 *                         --> baseline:  DIST/bench/proxy-server.js, another build (e.g. main's), one process:
 *                                      before/after in the same run
 *                         --> membraneFlags: this build's proxy-server.js with extra Node/V8 flags (--node-flags),
 *                                      to judge a flag (e.g. --single-threaded-gc) against "membrane" in one run
 *                         --> nginx1:    nginx, worker_processes 1      --> upstream (keepalive pool)
 *                         --> nginxAuto: nginx, worker_processes auto   --> upstream
 *                         --> dnsdist:   (DNS, in the lab) dnsdist, one listener, no cache --> resolver
 *   DNS likewise: direct to the resolver, and through Membrane's DNS proxy. As root, the DNS
 *   targets run in a network namespace of their own with the product's datapath shape and the
 *   real conntrack broker (proxy-dns-lab.ts: DNAT, ct id mark, ctnetlink), each load twice: a
 *   socket per channel, reused ("dns"), and a new socket per query ("dnsFresh": a new conntrack
 *   entry each, the proxy's miss path). Without root: on loopback, the proxy asking a stand-in
 *   broker (proxy-ctbroker.ts) that answers without the kernel, plus the stream, baseline, flags
 *   and workers variants.
 *
 * Each round runs every target once per phase, back to back, in an order
 * rotated per round (A/B/C, B/C/A, ...); figures are medians over rounds.
 * Phases: "moderate" (an open loop at a fixed rate well below saturation,
 * keep-alive connections) and "saturation" (a closed loop over several
 * connections). The machine is small and shared: every run also records the
 * CPU of the load generator, the proxy and the upstream, to show who limited it.
 */
import type { ChildProcess } from "node:child_process";
import os from "node:os";
import { join, resolve } from "node:path";
import type { LoadResult, LoadSpec } from "./load.js";
import { findNginx, startNginx, type Nginx } from "./nginx.js";
import { PROXY_NODE_FLAGS } from "../src/proxy/runtime/node-flags.js";
import { DNSDIST_SKIPPED, findDnsdist } from "./proxy-dnsdist.js";
import { needDnsperf, type LoadRunner } from "./load-dnsperf.js";
import { describeSetup, PROXY_CLI } from "./proxy-setup.js";
import { checkTargets, summarisePhase, type PhaseSamples, type Sample } from "./proxy-report.js";
import type { ProxyServerPorts } from "./proxy-server.js";
import {
  actAsAgent,
  childPids,
  cpuSeconds,
  cpuSystemSeconds,
  forkReady,
  stealSeconds,
  Rpc,
  startResolver,
  startUpstream,
  stopChild,
  type Closable,
} from "./proxy-procs.js";
import { benchArgs } from "./cli.js";
import { startDnsLab, type DnsLab } from "./proxy-dns-lab.js";

const MODERATE = { rate: 2000, connections: 8 } as const;
const SATURATION = { connections: 16 } as const;
/** Long enough for V8 to optimise the proxy's hot paths (thousands of requests) on a busy machine. */
const WARMUP_MS = 3000;
const NGINX_SKIPPED = "nginx not installed: run scripts/install-system-deps.sh";

interface Target {
  readonly name: string;
  readonly kind: LoadSpec["kind"];
  readonly port: number;
  readonly ports?: readonly number[];
  /** Processes doing the proxying, for CPU accounting (none for direct). */
  readonly pids: () => number[];
  /** DNS in the lab (proxy-dns-lab.ts): where the load sends from and to, its generator, the resolver's process. */
  readonly dns?: LoadSpec["dns"];
  readonly load?: LoadRunner;
  readonly upstreamPids?: () => number[];
}

type Phase = "moderate" | "saturation";
/** Which proxies to measure: both, or one of them (a DNS-only run skips nginx and the HTTP targets). */
type Only = "all" | "http" | "dns";
const PHASES: readonly Phase[] = ["moderate", "saturation"];

/** A proxy-server's process and its conntrack broker's (the product's proxy forks one too): both are the proxy's CPU. */
const withBroker = (pid: number): number[] => [pid, ...childPids(pid)];

const rotate = <T>(xs: readonly T[], by: number): T[] => xs.map((_, i) => xs[(i + by) % xs.length] as T);

export async function runProxyBench(
  opts: {
    rounds?: number;
    phaseMs?: number;
    workers?: number;
    baseline?: string;
    nodeFlags?: readonly string[];
    only?: Only;
    /** Name prefix of the DNS lab's network namespace (root only). */
    netnsPrefix?: string;
    /** The DNS lab's load generator: load.ts (default) or dnsperf (load-dnsperf.ts). */
    dnsLoad?: "node" | "dnsperf";
  } = {},
): Promise<Record<string, unknown>> {
  const rounds = opts.rounds ?? 5;
  const only = opts.only ?? "all";
  const phaseMs = opts.phaseMs ?? 2000;
  const workerCount = opts.workers ?? os.cpus().length;
  const inLab = only !== "http" && process.getuid?.() === 0;
  const dnsperf = opts.dnsLoad === "dnsperf" ? needDnsperf(inLab) : undefined;
  let upstream: Closable | undefined;
  let resolver: Closable | undefined;
  let membrane: ChildProcess | undefined;
  const others: ChildProcess[] = [];
  let loader: ChildProcess | undefined;
  const nginxes: Nginx[] = [];
  let lab: DnsLab | undefined;
  try {
    upstream = await startUpstream();
    resolver = await startResolver();
    // With the options the supervisor gives the real proxy process.
    const m = await forkReady<ProxyServerPorts>(
      "./proxy-server.js",
      [String(upstream.port), String(resolver.port)],
      PROXY_NODE_FLAGS,
    );
    membrane = m.child;
    actAsAgent(m.child);
    const membranePid = m.child.pid ?? 0;
    // The same build with the HTTP proxy's sockets on Node's streams (src/proxy/http/native-io.ts).
    const streams = await forkReady<ProxyServerPorts>(
      "./proxy-server.js",
      [String(upstream.port), String(resolver.port)],
      PROXY_NODE_FLAGS,
      { MEMBRANE_PROXY_IO: "stream" },
    );
    others.push(streams.child);
    actAsAgent(streams.child);
    // Several workers, each its own process and ports (proxy/runtime/workers.ts).
    const pool: { child: ChildProcess; ready: ProxyServerPorts }[] = [];
    for (let i = 0; workerCount > 1 && i < workerCount; i++) {
      const w = await forkReady<ProxyServerPorts>(
        "./proxy-server.js",
        [String(upstream.port), String(resolver.port)],
        PROXY_NODE_FLAGS,
      );
      others.push(w.child);
      actAsAgent(w.child);
      pool.push(w);
    }
    // Another build's proxy (before/after in one run).
    const base = opts.baseline
      ? await forkReady<ProxyServerPorts>(
          join(resolve(opts.baseline), "bench", "proxy-server.js"),
          [String(upstream.port), String(resolver.port)],
          PROXY_NODE_FLAGS,
        )
      : undefined;
    if (base) {
      others.push(base.child);
      actAsAgent(base.child);
    }
    // The same build with extra Node/V8 flags (a flag judged side by side with "membrane").
    const flagged =
      opts.nodeFlags && opts.nodeFlags.length > 0
        ? await forkReady<ProxyServerPorts>(
            "./proxy-server.js",
            [String(upstream.port), String(resolver.port)],
            [...PROXY_NODE_FLAGS, ...opts.nodeFlags],
          )
        : undefined;
    if (flagged) {
      others.push(flagged.child);
      actAsAgent(flagged.child);
    }
    const flaggedTargets = (kind: LoadSpec["kind"]): Target[] =>
      flagged
        ? [
            {
              name: "membraneFlags",
              kind,
              port: kind === "http" ? flagged.ready.httpPort : flagged.ready.dnsPort,
              pids: () => withBroker(flagged.child.pid ?? 0),
            },
          ]
        : [];
    const poolTargets = (kind: LoadSpec["kind"]): Target[] =>
      pool.length === 0
        ? []
        : [
            {
              name: "membraneWorkers",
              kind,
              port: 0,
              ports: pool.map((w) => (kind === "http" ? w.ready.httpPort : w.ready.dnsPort)),
              pids: () => pool.flatMap((w) => withBroker(w.child.pid ?? 0)),
            },
          ];
    const baseTargets = (kind: LoadSpec["kind"]): Target[] =>
      base
        ? [
            {
              name: "baseline",
              kind,
              port: kind === "http" ? base.ready.httpPort : base.ready.dnsPort,
              pids: () => withBroker(base.child.pid ?? 0),
            },
          ]
        : [];
    const l = await forkReady<unknown>("./load.js", []);
    loader = l.child;
    const rpc = new Rpc<LoadSpec, LoadResult>(l.child);

    const nginx = only === "dns" ? undefined : findNginx();
    const http: Target[] = [
      { name: "direct", kind: "http", port: upstream.port, pids: () => [] },
      { name: "membrane", kind: "http", port: m.ready.httpPort, pids: () => withBroker(membranePid) },
      {
        name: "membraneStream",
        kind: "http",
        port: streams.ready.httpPort,
        pids: () => withBroker(streams.child.pid ?? 0),
      },
      ...baseTargets("http"),
      ...flaggedTargets("http"),
      ...poolTargets("http"),
    ];
    if (nginx) {
      for (const [name, workers] of [
        ["nginx1", 1],
        ["nginxAuto", "auto"],
      ] as const) {
        const n = await startNginx({ ...nginx, workers, upstreamPort: upstream.port });
        nginxes.push(n);
        http.push({ name, kind: "http", port: n.port, pids: () => n.workerPids() });
      }
    }
    // As root: the DNS targets in their namespace, on the product's datapath (proxy-dns-lab.ts),
    // with dnsdist beside them when it is installed (the reference, as nginx is for HTTP).
    const dnsdist = inLab ? findDnsdist() : undefined;
    if (inLab) lab = await startDnsLab(opts.netnsPrefix ?? "mbrpx", { ...(dnsdist ? { dnsdist } : {}), ...(dnsperf ? { dnsperf: dnsperf.bin } : {}) }); // prettier-ignore
    const dnsdistSkipped = !inLab
      ? "dnsdist runs in the DNS lab only (as root)"
      : dnsdist
        ? undefined
        : DNSDIST_SKIPPED;
    const dnsFresh: Target[] = lab ? [...lab.fresh] : [];
    const dns: Target[] = lab
      ? [...lab.reused]
      : [
          { name: "direct", kind: "dns", port: resolver.port, pids: () => [] },
          { name: "membrane", kind: "dns", port: m.ready.dnsPort, pids: () => withBroker(membranePid) },
          // The same build with the DNS proxy's listener on Node's dgram socket (src/proxy/dns/native-io.ts).
          {
            name: "membraneStream",
            kind: "dns",
            port: streams.ready.dnsPort,
            pids: () => withBroker(streams.child.pid ?? 0),
          },
          ...baseTargets("dns"),
          ...flaggedTargets("dns"),
          ...poolTargets("dns"),
        ];
    if (only === "dns") http.length = 0;
    if (only === "http") dns.length = 0;

    const run = async (t: Target, phase: Phase, durationMs: number): Promise<Sample> => {
      const pids = t.pids();
      const cpu0 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const sys0 = pids.reduce((s, p) => s + cpuSystemSeconds(p), 0);
      const steal0 = stealSeconds();
      const up0 = process.cpuUsage();
      const t0 = performance.now();
      const upPids = t.upstreamPids?.() ?? [];
      const upCpu0 = upPids.reduce((s, p) => s + cpuSeconds(p), 0);
      const where = { kind: t.kind, port: t.port, ...(t.ports ? { ports: t.ports } : {}), ...(t.dns ? { dns: t.dns } : {}), durationMs }; // prettier-ignore
      const spec: LoadSpec = phase === "moderate" ? { ...where, ...MODERATE } : { ...where, ...SATURATION };
      const r = await (t.load ?? rpc).call(spec);
      const sec = (performance.now() - t0) / 1000;
      const up = process.cpuUsage(up0);
      const cpu1 = pids.reduce((s, p) => s + cpuSeconds(p), 0);
      const sys1 = pids.reduce((s, p) => s + cpuSystemSeconds(p), 0);
      const stolen = stealSeconds() - steal0;
      // The lab's resolver is a process of its own; otherwise the upstreams are this process.
      const upSec = t.upstreamPids
        ? upPids.reduce((s, p) => s + cpuSeconds(p), 0) - upCpu0
        : (up.user + up.system) / 1e6;
      return {
        ...r,
        proxyCpuPct: Math.round(((cpu1 - cpu0) / sec) * 100),
        proxySystemCpuPct: Math.round(((sys1 - sys0) / sec) * 100),
        stealPct: Math.round((stolen / sec / os.cpus().length) * 100),
        upstreamCpuPct: Math.round((upSec / sec) * 100),
      };
    };

    // Warm-up (JIT, connection pools): one closed-loop run per target, not recorded.
    for (const t of [...http, ...dns, ...dnsFresh]) await run(t, "saturation", WARMUP_MS);

    const samples = {
      http: { moderate: {} as PhaseSamples, saturation: {} as PhaseSamples },
      dns: { moderate: {} as PhaseSamples, saturation: {} as PhaseSamples },
      dnsFresh: { moderate: {} as PhaseSamples, saturation: {} as PhaseSamples },
    };
    for (let r = 0; r < rounds; r++) {
      for (const [proto, targets] of [
        ["http", http],
        ["dns", dns],
        ["dnsFresh", dnsFresh],
      ] as const) {
        for (const phase of PHASES) {
          for (const t of rotate(targets, r)) {
            const s = await run(t, phase, phaseMs);
            (samples[proto][phase][t.name] ??= []).push(s);
          }
        }
      }
    }

    return {
      bench: "proxy",
      setup: describeSetup({
        rounds,
        phaseMs,
        moderate: MODERATE,
        saturation: SATURATION,
        workerCount,
        ...(opts.baseline ? { baseline: opts.baseline } : {}),
        ...(flagged ? { nodeFlags: opts.nodeFlags ?? [] } : {}),
        ...(lab ? { lab: { netns: lab.netns, dnsdist: lab.dnsdist !== undefined } } : {}),
        ...(dnsperf ? { dnsperf: dnsperf.version } : {}),
      }),
      targets: checkTargets(samples.http, samples.dns, nginx === undefined, only, dnsdistSkipped),
      loadAverageAtEnd: os.loadavg().map((x) => +x.toFixed(2)),
      http: {
        moderate: summarisePhase(samples.http.moderate),
        saturation: summarisePhase(samples.http.saturation),
      },
      nginx: nginx
        ? { version: nginx.version, upstreamKeepalive: 64 }
        : { skipped: only === "dns" ? "--only=dns" : NGINX_SKIPPED },
      // Per thread over the whole run (warm-up included): which of its threads did the work.
      dnsdist: lab?.dnsdist
        ? { version: lab.dnsdist.version, threadCpuSeconds: lab.dnsdist.threadCpu() }
        : { skipped: only === "http" ? "--only=http" : dnsdistSkipped },
      dns: {
        moderate: summarisePhase(samples.dns.moderate),
        saturation: summarisePhase(samples.dns.saturation),
      },
      ...(lab
        ? {
            dnsFresh: {
              moderate: summarisePhase(samples.dnsFresh.moderate),
              saturation: summarisePhase(samples.dnsFresh.saturation),
            },
          }
        : {}),
    };
  } finally {
    await Promise.all(nginxes.map((n) => n.stop()));
    await stopChild(loader);
    await stopChild(membrane);
    for (const c of others) await stopChild(c);
    await upstream?.close();
    await resolver?.close();
    await lab?.close();
  }
}

if (process.argv[1]?.endsWith("/proxy.js")) {
  const { flags } = benchArgs(PROXY_CLI);
  runProxyBench({
    rounds: flags.rounds,
    phaseMs: flags.seconds * 1000,
    workers: flags.workers,
    only: flags.only,
    ...(flags.baseline !== undefined ? { baseline: flags.baseline } : {}),
    ...(flags["netns-prefix"] !== undefined ? { netnsPrefix: flags["netns-prefix"] } : {}),
    dnsLoad: flags["dns-load"],
    ...(flags["node-flags"] !== undefined ? { nodeFlags: flags["node-flags"].split(",") } : {}),
  }).then(
    (r) => console.log(JSON.stringify(r)),
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
