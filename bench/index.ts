/**
 * `npm run bench`: every benchmark, one JSON line each.
 *
 * The policy-core runs each size in its own process so that peak memory is
 * that configuration's alone. Benchmarks of the kernel path need root and
 * compare with and without Membrane side by side in the same run.
 *
 *   npm run bench                                        every benchmark
 *   npm run bench -- scale --endpoints=250,1000 --quick  one, with its options
 *   npm run bench -- layout                              the layout measurement (only when named)
 *   npm run bench -- cluster --quick                     the cluster benchmark's smoke size
 *   npm run bench -- ui                                  the service map in chromium
 *   npm run bench -- encryption --seconds=5 --rounds=3   plaintext vs WireGuard vs IPsec vs the mTLS tunnel, each +strict, one run
 *   npm run bench -- encryption --mode=ipsec              plaintext vs one mode (or a list: --mode=wireguard,mtls-tunnel)
 *   npm run bench -- encryption-rekey                     key rotation under iperf3 (WireGuard, IPsec): stall, bytes, resets
 *   npm run bench -- gateway                             the gateway vs nginx with the same routes
 *   npm run bench -- auth [--nodes 2]                   mutual authentication: first/later connection vs no auth (one node, or across two)
 *   npm run bench -- runtime-kill [--kills=300 --rounds=3 --quick]   syscall -> kill latency (kernel view), open-loop cost
 *   npm run bench -- runtime-events [--execs=2000 --rounds=3 --quick] exec-loop overhead, events/s with losses
 *   npm run bench -- --help                              this list (runs nothing)
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The names this runner knows, for --help (each runs with `npm run bench -- NAME [options]`). */
const NAMES =
  "policy-core datapath flows proxy hubble layout scale runtime-events runtime-kill auth gateway lb cni encryption encryption-rekey mtls-tunnel cluster ui";

if (process.argv.includes("--help") || process.argv.includes("-h")) {
  console.log(`Usage: npm run bench -- [NAME...] [--option=value...]

Runs every benchmark (root for the kernel ones; hours in all), or only those named; one JSON line each.
Names: ${NAMES}
(layout, encryption, encryption-rekey and mtls-tunnel run only when named). Options go to the named benchmarks, e.g.:
  npm run bench -- runtime-kill --kills=300 --rounds=4     syscall -> kill latency, kernel view (p50/p99)
  npm run bench -- runtime-events --execs=2000 --rounds=3  exec-loop overhead (< 5%), events/s (>= 50,000)
  npm run bench -- scale --endpoints=250,1000 --quick
Report the load average beside any figure: this machine is shared.`);
  process.exit(0);
}

const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));
const only = process.argv.slice(2).filter((a) => !a.startsWith("--"));
/** Options (`--endpoints=250`, `--quick`) go to the benchmarks that take them (scale). */
const flags = process.argv.slice(2).filter((a) => a.startsWith("--"));
const want = (name: string): boolean => only.length === 0 || only.includes(name);

function child(script: string, args: string[]): void {
  const r = spawnSync(process.execPath, ["--expose-gc", here(script), ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (r.status !== 0) {
    console.log(JSON.stringify({ bench: script, args, error: `exit ${r.status}` }));
    return;
  }
  process.stdout.write(r.stdout);
}

if (want("policy-core")) {
  for (const [eps, pols] of [
    [1000, 100],
    [1000, 1000],
    [10000, 100],
    [10000, 1000],
  ] as const) {
    child("./policy-core.js", [String(eps), String(pols)]);
  }
  console.log(
    JSON.stringify({
      bench: "policy-core",
      targets: { "10000x1000 fullResolveMs": "< 5000", peakRssMiB: "< 1024", "incremental p99 ms": "< 20" },
    }),
  );
}

for (const [name, file] of [
  ["datapath", "./datapath.js"],
  ["flows", "./flows.js"],
  ["proxy", "./proxy.js"],
  // Hubble's Observer API and the relay: encoding, flows/s over gRPC, the relay's merge (issue 14).
  ["hubble", "./hubble.js"],
] as const) {
  if (want(name) && existsSync(here(file))) child(file, []);
}

// The measurement behind the datapath's layout (src/datapath/compile.ts): about 40 minutes, so only
// when named: `npm run bench -- layout`.
if (only.includes("layout")) child("./layout.js", flags);

// The agent at cluster scale: 250 and 1,000 endpoints, 50,000 remote addresses (issue 10 item 6).
if (want("scale")) child("./scale.js", flags);

// Runtime events: exec-loop overhead of the process event source, records/s and losses (issue 15).
if (want("runtime-events")) child("./runtime-events.js", flags);

// Runtime enforcement: latency from the offending syscall to the kill, and the open-loop cost (issue 15).
if (want("runtime-kill")) child("./runtime-kill.js", flags);

// Mutual authentication: first connection of a new pair (held, prefilled), later ones, a rule without auth;
// `auth --nodes 2` across two nodes of a lab cluster, with handshakes per second (issue 12 item 8).
if (want("auth")) child("./auth.js", flags);

// The gateway vs nginx configured for the same routes: requests/s, added p50/p99 (issue 16 item 8).
if (want("gateway")) child("./gateway.js", flags);

// Services in the kernel: ClusterIP vs direct, one backend change among 10,000 services (issue 16 item 8).
if (want("lb")) child("./lb.js", flags);

// membrane-cni ADD/DEL, direct and through podman, with 100 endpoints (issue 17 item 6).
if (want("cni")) child("./cni.js", flags);

// Pod-to-pod TCP between two lab nodes: plaintext vs WireGuard vs IPsec vs the mTLS node tunnel, each with and
// without strict mode, in one run (--mode= narrows it; issue 13 item 7). `mtls-tunnel`: the tunnel vs wireguard-go.
if (only.includes("encryption")) child("./encryption.js", flags);
if (only.includes("mtls-tunnel"))
  child("./encryption.js", [
    ...flags.filter((f) => !f.startsWith("--mode=")),
    "--mode=mtls-tunnel,wireguard",
  ]);
// Key rotation under a running iperf3, WireGuard and IPsec: the stall, bytes, retransmits, resets (issue 13).
if (only.includes("encryption-rekey")) child("./encryption-rekey.js", flags);

// Three real nodes on etcd with 100 simulated nodes x 100 endpoints: propagation, etcd writes per
// endpoint, agent memory and CPU, policy apply on every node (issue 11 item 11).
if (want("cluster")) child("./cluster.js", flags);

// The service map in chromium: first render of 500 workloads / 2,000 edges, live update (issue 14 item 7).
if (want("ui")) child("./ui.js", flags);
