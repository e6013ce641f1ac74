/**
 * The proxy benchmark's command line and its "setup" record (proxy.ts): what ran, how, and where,
 * in words a reader of the JSON line needs to judge the figures.
 */
import os from "node:os";
import { resolve } from "node:path";
import { PROXY_NODE_FLAGS } from "../src/proxy/runtime/node-flags.js";
import { choice, int, num, text } from "./cli.js";

/** proxy.ts's flags, notes and summary (benchArgs). */
export const PROXY_CLI = {
  script: "proxy",
  runner: "proxy",
  measures: "The L7 proxies on loopback: the same load straight to the server, through Membrane's HTTP and DNS proxies, and through nginx and dnsdist, side by side, rounds rotated: requests/s and added latency at a moderate open-loop rate and at saturation, with each process's CPU. One JSON line.", // prettier-ignore
  root: false as const,
  notes: [
    "Needs Debian's nginx and dnsdist (scripts/install-system-deps.sh); without one, its targets are skipped.",
    "As root, dnsdist (one listener, no cache) runs beside Membrane's DNS proxy in the lab: the reference DNS proxy.", // prettier-ignore
    "As root, the DNS targets run in a network namespace of their own (--netns-prefix) with the product's DNAT, ct id mark and conntrack broker, also with a new socket per query (dnsFresh); without root, on loopback with a stand-in broker.", // prettier-ignore
  ],
  flags: {
    rounds: int({ help: "rounds (each runs every target once per phase)", min: 1, max: 100, default: 5 }),
    seconds: num({ help: "seconds per phase and target", min: 0.1, max: 600, default: 2 }),
    workers: int({ help: "proxy processes of the membraneWorkers target (1 skips it)", min: 1, max: 64, default: os.cpus().length }), // prettier-ignore
    baseline: text({ help: "another build's dist directory (e.g. main's): its proxy-server.js runs as target \"baseline\"", value: "DIST", shown: "none", pattern: /^.+$/, what: "a directory" }), // prettier-ignore
    "node-flags": text({ help: "extra Node/V8 flags, comma-separated, for target \"membraneFlags\" (this build's proxy with the proxy process's flags plus these), e.g. --single-threaded-gc,--min-semi-space-size=16", value: "FLAGS", shown: "none", pattern: /^--[a-z0-9-]+(=[A-Za-z0-9.]+)?(,--[a-z0-9-]+(=[A-Za-z0-9.]+)?)*$/, what: "flags such as --single-threaded-gc,--min-semi-space-size=16 (comma-separated, each starting with --)" }), // prettier-ignore
    "netns-prefix": text({ help: "name prefix of the DNS targets' network namespace (as root)", value: "PREFIX", shown: "mbrpx", pattern: /^[a-z][a-z0-9]{0,7}$/, what: "1-8 lowercase letters and digits, starting with a letter" }), // prettier-ignore
    "dns-load": choice({ help: "the DNS lab's load generator: node (load.ts) or dnsperf (Debian's, C; no dnsFresh rows): how much of the machine the generator takes", choices: ["node", "dnsperf"], default: "node" }), // prettier-ignore
    only: choice({ help: "measure only the HTTP or only the DNS proxy (dns: no nginx, no HTTP targets)", choices: ["all", "http", "dns"], default: "all" }), // prettier-ignore
  },
};

export function describeSetup(p: {
  readonly rounds: number;
  readonly phaseMs: number;
  readonly moderate: { readonly rate: number; readonly connections: number };
  readonly saturation: { readonly connections: number };
  readonly workerCount: number;
  readonly baseline?: string;
  /** The extra Node/V8 flags of "membraneFlags", when it runs. */
  readonly nodeFlags?: readonly string[];
  /** dnsperf's version when it is the DNS lab's load generator (--dns-load dnsperf). */
  readonly dnsperf?: string;
  /** The DNS lab's namespace (root), and whether dnsdist runs in it. */
  readonly lab?: { readonly netns: string; readonly dnsdist: boolean };
}): Record<string, unknown> {
  return {
    rounds: p.rounds,
    phaseMs: p.phaseMs,
    cpus: os.cpus().length,
    node: process.version,
    moderate: `open loop, ${p.moderate.rate} requests/s over ${p.moderate.connections} keep-alive connections, one request in flight each`,
    saturation: `closed loop, ${p.saturation.connections} keep-alive connections, one request in flight each`,
    processes:
      "load generator, Membrane's proxies, each nginx, dnsdist and the upstream+resolver are separate processes; nothing is pinned",
    membraneWorkers:
      p.workerCount > 1
        ? `${p.workerCount} proxy processes, the load's connections spread over them round robin`
        : "skipped (--workers 1)",
    baseline: p.baseline ? resolve(p.baseline) : "none (--baseline DIST: another build's dist directory)",
    membraneFlags: p.nodeFlags
      ? [...PROXY_NODE_FLAGS, ...p.nodeFlags].join(" ")
      : "skipped (--node-flags FLAGS: extra Node/V8 flags for a second copy of this build's proxy)",
    dns: p.lab
      ? `in network namespace ${p.lab.netns}: the load's queries DNATed to the proxy (nat output), ct id marked on input, the real conntrack broker; "membraneAsk": a second proxy whose datagrams carry no ct id (every query asks the broker: the path before the cache); direct from another source address to the same resolver; "dns": a socket per channel, reused; "dnsFresh": a new socket (source port, conntrack entry) per query. membraneStream, baseline, membraneFlags and membraneWorkers are not run for DNS here` +
        (p.lab.dnsdist
          ? `; "dnsdist": the reference DNS proxy, its load DNATed to it from its own source address as Membrane's is (the same conntrack NAT, no ct id, no broker), one listener, no cache, forwarding to the same resolver`
          : "")
      : "on loopback in this namespace (not root): the proxy asks a stand-in conntrack broker that answers without the kernel",
    // Only with --dns-load dnsperf: the default run's record is as it was.
    ...(p.dnsperf
      ? { dnsLoad: `dnsperf ${p.dnsperf} (load-dnsperf.ts): the same query, sockets, rate and duration; up to 16 queries outstanding over 16 sockets (not strictly one per socket); latency from the send; no dnsFresh` } // prettier-ignore
      : {}),
    loadAverage: os.loadavg().map((x) => +x.toFixed(2)),
    fairComparison:
      "nginx1 (worker_processes 1): Membrane's proxy is one single-threaded Node process, so is one nginx worker. " +
      "nginxAuto uses one worker per CPU and competes with the load generator and the upstream for the same CPUs. " +
      "dnsdist: one listener (one UDP thread; the resolver's answers come back on its one responder thread), no cache.",
  };
}
