/**
 * The benchmarks `npm run bench` knows (bench/index.ts), in the order it runs them, each with the
 * script it runs (dist/bench/<script>.js) and an example command for its --help. The flags of each
 * are the script's own declaration (its `--help-json`); test/bench/cli.test.ts checks every script
 * named here exists and every flag an example shows is one its script declares.
 */
export interface RunnerEntry {
  readonly name: string;
  readonly script: string;
  /** One line: what it measures. */
  readonly about: string;
  /** An example command line after `npm run bench -- ` (its flags must be the script's). */
  readonly example: string;
  /** Run only when named (it takes long, or it needs a lab of its own). */
  readonly onlyWhenNamed?: true;
}

export const RUNNERS: readonly RunnerEntry[] = [
  { name: "policy-core", script: "policy-core", about: "full resolution and incremental cost, 1,000-10,000 endpoints x 100-1,000 policies", example: "policy-core" },
  { name: "datapath", script: "datapath", about: "what the nftables table costs traffic; policy apply -> enforced (root)", example: "datapath --rounds=4 --seconds=5" },
  { name: "flows", script: "flows", about: "the flow pipeline without the kernel: decode, enrich, filter, ring, metrics", example: "flows" },
  { name: "proxy", script: "proxy", about: "the L7 proxies vs direct vs nginx (HTTP) and dnsdist (DNS, root)", example: "proxy --rounds 5 --seconds 2 --workers 2" },
  { name: "hubble", script: "hubble", about: "Hubble's Observer API and the relay: encoding, flows/s over gRPC, the merge", example: "hubble --only=relay --seconds=10" },
  { name: "layout", script: "layout", about: "nftables layouts compared at 1,000 endpoints (root, ~40 min)", example: "layout --rounds 3", onlyWhenNamed: true },
  { name: "scale", script: "scale", about: "the agent at 250 and 1,000 endpoints, 50,000 remote addresses (root)", example: "scale --endpoints=250,1000 --quick" },
  { name: "runtime-events", script: "runtime-events", about: "exec-loop overhead of the process event sources, events/s with losses (root)", example: "runtime-events --execs=2000 --rounds=3" },
  { name: "runtime-kill", script: "runtime-kill", about: "syscall -> kill latency (kernel view), open-loop cost (root)", example: "runtime-kill --kills=300 --rounds=3" },
  { name: "runtime-rate", script: "runtime-rate", about: "TracingPolicy events/s through the agent's pipeline, losses counted in the kernel (root)", example: "runtime-rate --rates=25000,50000,75000,0 --seconds=5" },
  { name: "runtime-overhead", script: "runtime-overhead", about: "exec/open loop CPU per operation: off vs events vs + a policy, pair ratios (root)", example: "runtime-overhead --rounds=7" },
  { name: "auth", script: "auth", about: "mutual authentication: first/later connection vs no auth, one node or two (root)", example: "auth --nodes 2" },
  { name: "auth-cpu", script: "auth-cpu", about: "CPU per cross-node pair in the pooled connection's messages: session 14's path vs protocol v1 vs v2", example: "auth-cpu --rounds=10" },
  { name: "gateway", script: "gateway", about: "the gateway vs nginx with the same routes", example: "gateway --rounds 5" },
  { name: "lb", script: "lb", about: "services in the kernel: ClusterIP vs direct, one backend change among 10,000 (root)", example: "lb --rounds=4 --services=10000" },
  { name: "cni", script: "cni", about: "membrane-cni ADD/DEL, direct and through podman (root)", example: "cni --quick" },
  { name: "encryption", script: "encryption", about: "plaintext vs WireGuard vs IPsec vs the mTLS tunnel, each +strict, in one run between two lab nodes (root)", example: "encryption --seconds=5 --rounds=3 --mode=all", onlyWhenNamed: true },
  { name: "encryption-rekey", script: "encryption-rekey", about: "key rotation of both nodes under a running iperf3: stall, resets, retransmits (root)", example: "encryption-rekey --seconds=30 --rounds=2", onlyWhenNamed: true },
  { name: "cluster", script: "cluster", about: "three real agents + simulated nodes in etcd (root, etcd)", example: "cluster --quick" },
  { name: "ui", script: "ui", about: "the service map in chromium: first render of 500 workloads", example: "ui" },
]; // prettier-ignore

export const runner = (name: string): RunnerEntry | undefined => RUNNERS.find((r) => r.name === name);
