/**
 * dnsperf (DNS-OARC's, Debian's package) as the DNS lab's other load generator (proxy.ts
 * --dns-load dnsperf): a C generator in place of load.ts, to show how much of the machine the Node
 * generator takes. The same query (api.example.com A), source address, destination, sockets, rate
 * and duration as load.ts is given:
 *
 *   saturation (closed loop):  -c 16 -q 16         16 sockets, at most 16 queries outstanding
 *   moderate (open loop):      -c 8 -q 8 -Q 2000   dnsperf paces its sends to the rate
 *
 *   sh -c 'dnsperf ... -v > out; cat /proc/$$/stat' --> the answers' latencies (one line each, to a
 *   file read afterwards, so that nothing reads a pipe during the run) and dnsperf's CPU (the
 *   shell's cutime/cstime once it waited for it)
 *
 * Differences from load.ts, said where the figures are used: dnsperf keeps 16 queries outstanding
 * over its 16 sockets, not strictly one per socket; its latency runs from the send, not from the
 * moment the open loop made a query due (a queue in front of a free socket is not counted); no
 * dnsFresh (it keeps its sockets).
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { percentile, type LoadResult, type LoadSpec } from "./load.js";

/** What runs a load spec: load.ts over its IPC channel (Rpc) or dnsperf. */
export interface LoadRunner {
  call(spec: LoadSpec): Promise<LoadResult>;
}

/** The one query of the bench's loads (load-channels.ts), as dnsperf's input. */
const QUERIES = "api.example.com A\n";
/** load.ts's DNS timeout: a lost answer counts as an error after 1 s. */
const TIMEOUT_S = 1;
const CLOCK_TICKS = 100; // USER_HZ

/** dnsperf's arguments for `spec`; a spec dnsperf cannot run is an error saying why. */
export function dnsperfArgs(spec: LoadSpec, datafile: string): string[] {
  const why =
    spec.kind !== "dns"
      ? `it sends DNS only, not ${spec.kind}`
      : spec.dns?.fresh === true
        ? "it keeps its sockets (no new socket per query: dnsFresh)"
        : spec.ports !== undefined
          ? "it sends to one port"
          : undefined;
  if (why !== undefined) throw new Error(`Cannot run dnsperf for this load: ${why}`);
  const n = String(spec.connections);
  return [
    ...["-s", spec.dns?.host ?? "127.0.0.1", "-p", String(spec.port)],
    ...(spec.dns?.bind !== undefined ? ["-a", spec.dns.bind] : []),
    ...["-d", datafile, "-c", n, "-q", n, "-T", "1", "-t", String(TIMEOUT_S)],
    ...["-l", (spec.durationMs / 1000).toFixed(3), "-v"],
    ...(spec.rate !== undefined ? ["-Q", String(spec.rate)] : []),
  ];
}

/**
 * dnsperf's -v output and its CPU seconds as a LoadResult: each "> NOERROR <name> <type> <s>" line
 * is an answer and its latency; another rcode, or a query lost (timed out), is an error.
 */
export function parseDnsperf(out: string, cpuSeconds: number): LoadResult {
  const lat: number[] = [];
  let errors = 0;
  for (const m of out.matchAll(/^> (\S+) \S+ \S+ ([\d.]+)$/gm)) {
    if (m[1] === "NOERROR") lat.push(Number(m[2]) * 1000);
    else errors++;
  }
  const runTime = Number(/^\s*Run time \(s\):\s+([\d.]+)/m.exec(out)?.[1]);
  const lost = /^\s*Queries lost:\s+(\d+)/m.exec(out)?.[1];
  if (!(runTime > 0) || lost === undefined)
    throw new Error(`Cannot read dnsperf's statistics: no "Run time" or "Queries lost" in its output: ${out.slice(-500)}`); // prettier-ignore
  errors += Number(lost);
  const sorted = Float64Array.from(lat).sort();
  return {
    count: lat.length,
    perSecond: Math.round(lat.length / runTime),
    p50Ms: +percentile(sorted, 50).toFixed(3),
    p90Ms: +percentile(sorted, 90).toFixed(3),
    p99Ms: +percentile(sorted, 99).toFixed(3),
    errors,
    maxQueue: 0,
    skipped: 0,
    loadgenCpuPct: Math.round((cpuSeconds / runTime) * 100),
  };
}

/** CPU seconds of the children a shell waited for, from the last line of /proc/<sh>/stat. */
function childrenCpu(stat: string): number {
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[13]) + Number(f[14])) / CLOCK_TICKS; // cutime, cstime
}

/** dnsperf run with `bin`, in `netns` when given; close() removes its temp dir. */
export function dnsperfLoad(
  bin: string,
  netns?: string,
): LoadRunner & { readonly dir: string; close(): void } {
  const dir = mkdtempSync(join(tmpdir(), "membrane-bench-dnsperf-"));
  const datafile = join(dir, "queries.txt");
  writeFileSync(datafile, QUERIES);
  const outFile = join(dir, "out.txt");
  const call = async (spec: LoadSpec): Promise<LoadResult> => {
    const script = '"$0" "$@" > "$DNSPERF_OUT" 2>&1; s=$?; cat /proc/$$/stat; exit $s';
    const argv = ["sh", "-c", script, bin, ...dnsperfArgs(spec, datafile)];
    const env = { ...process.env, DNSPERF_OUT: outFile };
    const child = netns
      ? spawn("ip", ["netns", "exec", netns, ...argv], { stdio: ["ignore", "pipe", "inherit"], env })
      : spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "pipe", "inherit"], env });
    let stat = "";
    child.stdout.on("data", (d: Buffer) => (stat += d.toString("latin1")));
    const code = await new Promise<number | null>((res, rej) => {
      child.once("error", rej);
      child.once("close", res);
    });
    const out = readFileSync(outFile, "utf8");
    if (code !== 0) throw new Error(`Cannot run dnsperf: it exited with code ${code}: ${out.slice(-500)}`);
    return parseDnsperf(out, childrenCpu(stat.trim()));
  };
  return { call, dir, close: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The dnsperf binary and its version, or undefined when none of `candidates` runs. */
export function findDnsperf(
  candidates: readonly string[] = ["/usr/bin/dnsperf", "/usr/local/bin/dnsperf"],
): { bin: string; version: string } | undefined {
  for (const bin of candidates) {
    const r = spawnSync(bin, ["-H"], { encoding: "utf8" });
    const version = r.status === 0 ? /^Version (\S+)/m.exec(r.stdout)?.[1] : undefined;
    if (version !== undefined && r.stdout.includes("DNS Performance Testing Tool")) return { bin, version };
  }
  return undefined;
}

/** dnsperf, asked for by --dns-load: an error (before anything starts) when it cannot run. */
export function needDnsperf(inLab: boolean): { bin: string; version: string } {
  if (!inLab)
    throw new Error("Cannot use --dns-load dnsperf: it runs in the DNS lab only (as root, DNS measured)");
  const d = findDnsperf();
  if (!d)
    throw new Error("Cannot use --dns-load dnsperf: dnsperf is not installed (apt-get install dnsperf)");
  return d;
}
