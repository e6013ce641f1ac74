/**
 * Benchmark of the kernel path (needs root): what Membrane's nftables table
 * costs traffic, and how fast a policy change is enforced through the agent.
 *
 *   node dist/bench/datapath.js [traffic|agent] [--rounds=4] [--seconds=5] [--pin=C,S|none] [--prefix=mbb]
 *                                          -> one JSON line per figure
 *
 * 1. TCP throughput (iperf3) and request/response rate (a Node ping-pong, 1-byte
 *    messages) between two endpoint namespaces, with no table vs with Membrane
 *    enforcing 10,000 identities and 10,000 MapState entries on the receiver.
 *    Conditions alternate in ABBA order; the median of the paired ratios is reported.
 * 2. Policy apply -> enforced latency through the agent (applyPolicies wall
 *    time) at 100 and 1,000 endpoints, and endpoint create latency.
 *
 * Everything runs in scratch namespaces with a unique prefix, removed at the end.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import type { AgentOptions } from "../src/agent/run.js";
import { createEndpoint, createNode } from "../src/datapath/endpoint.js";
import { runRaw } from "../src/datapath/exec.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { Reconciler } from "../src/datapath/reconcile.js";
import type { DatapathState, PolicySegment } from "../src/datapath/types.js";
import { Probe } from "../src/probe/probe.js";
import { EmbeddedStore } from "../src/store/embedded.js";
import { benchArgs, custom, int, text } from "./cli.js";
import { seedEndpoints } from "./scale-world.js";
import {
  abTraffic,
  has,
  IPERF_PORT,
  median,
  parsePin,
  pct,
  r1,
  RR_PORT,
  trafficFigures,
  type Pin,
} from "./traffic.js";

/** The agent's modules load once the command line is read: --help answers without them (~2 s of CPU). */
const startAgent: typeof import("../src/agent/run.js").startAgent = async (...a) =>
  (await import("../src/agent/run.js")).startAgent(...a);

const out = (o: Record<string, unknown>): void => console.log(JSON.stringify({ bench: "datapath", ...o }));
// ---- part 1: traffic with and without Membrane -------------------------------------------

const CLIENT_ID = 1001;
const SERVER_ID = 1002;
const BIG = 10_000;

/** 10k ipcache prefixes (identities) and 10k segments on the server's ingress incl. the client. */
function bigState(
  client: { ip: string; ifname: string },
  server: { ip: string; ifname: string },
): DatapathState {
  const ipcache = [
    { prefix: `${client.ip}/32`, identity: CLIENT_ID },
    { prefix: `${server.ip}/32`, identity: SERVER_ID },
  ];
  const segments: PolicySegment[] = [
    { identity: CLIENT_ID, proto: 6, lo: IPERF_PORT, hi: IPERF_PORT, action: "allow", ruleId: 1 },
    { identity: CLIENT_ID, proto: 6, lo: RR_PORT, hi: RR_PORT, action: "allow", ruleId: 1 },
  ];
  for (let i = 0; ipcache.length < BIG; i++) {
    const id = 2000 + i;
    ipcache.push({ prefix: `10.${100 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`, identity: id });
    if (segments.length < BIG) {
      segments.push({
        identity: id,
        proto: i % 3 === 0 ? 17 : 6,
        lo: 8000 + (i % 50),
        hi: 8000 + (i % 50),
        action: i % 10 === 0 ? "deny" : "allow",
        ruleId: 1,
      });
    }
  }
  ipcache.sort((a, b) => (a.prefix < b.prefix ? -1 : 1));
  return {
    hostIdentity: 1,
    rules: [{ id: 1, text: "bench" }],
    ipcache,
    endpoints: [
      {
        id: 1,
        name: "bench/client",
        hostIfname: client.ifname,
        ipv4: client.ip,
        identity: CLIENT_ID,
        ingress: { enforced: false, segments: [] },
        egress: { enforced: false, segments: [] },
      },
      {
        id: 2,
        name: "bench/server",
        hostIfname: server.ifname,
        ipv4: server.ip,
        identity: SERVER_ID,
        ingress: { enforced: true, segments },
        egress: { enforced: false, segments: [] },
      },
    ],
  };
}

async function traffic(prefix: string, rounds: number, seconds: number, pin: Pin | undefined): Promise<void> {
  const node = await createNode({
    netns: `${prefix}-node`,
    gateway4: "10.220.0.1",
    podCidr4: "10.220.0.0/24",
  });
  const client = { ip: "10.220.0.2", ifname: `${prefix}c`, netns: `${prefix}-client` };
  const server = { ip: "10.220.0.3", ifname: `${prefix}s`, netns: `${prefix}-server` };
  for (const e of [client, server]) {
    await createEndpoint({ node, name: e.netns, netns: e.netns, hostIfname: e.ifname, ipv4: e.ip });
  }
  const rec = new Reconciler({ netns: node.netns, table: "membrane_bench" });
  const state = bigState(client, server);
  const loadMs: number[] = [];
  let enforcing: string[] = [];
  const ab = await abTraffic({
    client,
    server,
    rounds,
    seconds,
    pin,
    conditions: ["none", "membrane"],
    setCondition: async (cond) => {
      const t0 = performance.now();
      const loaded =
        (await runRaw(["nft", "list", "table", "inet", rec.table], { netns: node.netns })).status === 0;
      if (cond === "none") {
        if (loaded) await rec.deleteTable();
      } else if (!loaded) {
        // ABBA: the second window of a pair keeps the table the first one loaded.
        const a = await rec.apply(state);
        if (!a.changed) throw new Error("the table was expected to be loaded");
        loadMs.push(performance.now() - t0);
        if (enforcing.length === 0) {
          // The table is on the path: the allowed port answers, another port is dropped.
          const probe = Probe.start(client.netns);
          enforcing = [
            await probe.tcp(server.ip, RR_PORT, 1000),
            await probe.tcp(server.ip, RR_PORT + 1, 1000),
          ];
          probe.stop();
        }
      }
    },
  });
  const verify = await runRaw(["nft", "list", "map", "inet", rec.table, "ipcache4"], { netns: node.netns });
  for (const f of trafficFigures(ab, "none", "membrane", { seconds, rounds })) out(f);
  out({
    figure: "table-load",
    identities: state.ipcache.length,
    serverIngressEntries: state.endpoints[1]?.ingress.segments.length,
    loadMsMedian: Math.round(median(loadMs)),
    tableStillLoaded: verify.status === 0,
    enforcingCheck: `allowed port ${enforcing[0]}, other port ${enforcing[1]}`,
  });
}

// ---- part 2: through the agent -----------------------------------------------------------

const policy = (i: number): string => `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bench, namespace: default}
spec:
  endpointSelector: {matchLabels: {tier: db}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: app1}}]
    toPorts: [{ports: [{port: "${i % 2 === 0 ? 5432 : 5433}", protocol: TCP}]}]
`;
const labelsOf = (i: number): Record<string, string> => ({
  app: `app${i % 10}`,
  tier: i % 5 === 0 ? "db" : "web",
});

async function agentLatency(prefix: string, applies: number, capMs: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "membrane-bench-"));
  const o: AgentOptions = {
    stateDir: join(dir, "state"),
    socketPath: join(dir, "agent.sock"),
    nodeNetns: `${prefix}-anode`,
    netnsPrefix: `${prefix}-`,
    podCidr4: "10.221.0.0/21",
    table: "membrane_bench",
    logGroup: 1,
    engine: {},
    logLevel: "silent",
    resyncMs: 0,
  };
  const log = pino({ level: "silent" });
  let running = await startAgent(o, log);
  try {
    const applyAt = async (n: number): Promise<void> => {
      const ms: number[] = [];
      const t0 = performance.now();
      for (let i = 0; i < applies && performance.now() - t0 < capMs; i++) {
        const t = performance.now();
        const r = await running.agent.applyPolicies(policy(i), "bench.yaml");
        ms.push(performance.now() - t);
        if (i > 0 && r.kernelOps === 0) throw new Error("an apply changed nothing in the kernel");
      }
      out({
        figure: "policy-apply-latency",
        endpoints: n,
        applies: ms.length,
        p50Ms: r1(pct(ms, 0.5)),
        p99Ms: r1(pct(ms, 0.99)),
        maxMs: r1(Math.max(...ms)),
        target: n >= 1000 ? "p99 < 250 ms" : undefined,
      });
    };
    const create = async (from: number, to: number): Promise<number[]> => {
      const ms: number[] = [];
      const t0 = performance.now();
      for (let i = from; i < to && performance.now() - t0 < capMs; i++) {
        const t = performance.now();
        await running.agent.createEndpointRequest({
          name: `ep${i}`,
          namespace: "default",
          labels: labelsOf(i),
        });
        ms.push(performance.now() - t);
      }
      return ms;
    };
    const first = await create(0, 100);
    out({
      figure: "endpoint-create-latency",
      range: "0-100",
      created: first.length,
      p50Ms: r1(pct(first, 0.5)),
      p99Ms: r1(pct(first, 0.99)),
    });
    await applyAt(running.agent.listEndpoints().length);

    // 100 -> 1000: records written straight into the store (sequential creates cost O(n) each, see the
    // report), then the agent restarts and builds their namespaces and the kernel state in one go.
    await running.stop();
    const store = await EmbeddedStore.open({ dir: join(o.stateDir, "store"), logger: log });
    await seedEndpoints(store, {
      from: 100,
      n: 1000,
      podCidr4: o.podCidr4 ?? "",
      netnsPrefix: o.netnsPrefix ?? "",
      labels: labelsOf,
    });
    await store.close();
    const ts = performance.now();
    running = await startAgent(o, log);
    const n = running.agent.listEndpoints().length;
    out({
      figure: "agent-start",
      endpoints: n,
      startMs: Math.round(performance.now() - ts),
      note: "creates the namespaces of seeded endpoints and loads the kernel state",
    });
    await applyAt(n);
    const more = await create(1000, 1020);
    out({
      figure: "endpoint-create-latency",
      range: "1000-1020",
      created: more.length,
      p50Ms: r1(pct(more, 0.5)),
      p99Ms: r1(pct(more, 0.99)),
    });
  } finally {
    await running.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

// ---- main ----------------------------------------------------------------------------------

const SPEC = {
  script: "datapath",
  runner: "datapath",
  measures: "What Membrane's nftables table costs traffic (TCP throughput and request/response rate, no table vs 10,000 identities, ABBA rounds, paired ratios), and policy apply -> enforced latency through the agent at 100 and 1,000 endpoints. One JSON line per figure.", // prettier-ignore
  root: "scratch namespaces and nftables tables; needs iperf3",
  args: {
    usage: "[traffic|agent ...]",
    help: "only these parts (default: both)",
    min: 0,
    max: 2,
    check: (a: readonly string[]) =>
      a.every((x) => x === "traffic" || x === "agent")
        ? undefined
        : `${a.join(" ")}: name traffic and/or agent`,
  },
  flags: {
    rounds: int({ help: "ABBA rounds of the traffic figures", min: 1, max: 20, default: 4 }),
    seconds: int({ help: "seconds per traffic window", min: 1, max: 30, default: 5 }),
    pin: custom({ help: "CPUs of the traffic client and server, or none", value: "C,S|none", default: undefined as string | undefined, shown: "the bench's own choice", parse: (v) => (parsePin(v), v) }), // prettier-ignore
    prefix: text({ help: "stem of the scratch namespaces", value: "STEM", default: "mbb", pattern: /^[a-z][a-z0-9]{1,5}$/, what: "2-6 lower-case letters and digits, a letter first" }), // prettier-ignore
  },
};

async function main(): Promise<void> {
  const { flags, args: only } = benchArgs(SPEC);
  if (process.getuid?.() !== 0) return out({ skipped: "needs root (network namespaces, nftables)" });
  for (const bin of ["ip", "nft"])
    if (!has(bin)) return out({ skipped: `needs ${bin} (apt-get install iproute2 nftables)` });
  const prefix = flags.prefix + randomBytes(2).toString("hex");
  const pin = parsePin(flags.pin);
  const { rounds, seconds } = flags;
  const onSignal = (): void => void cleanupPrefix(`${prefix}-`).finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    if (only.length === 0 || only.includes("traffic"))
      await traffic(prefix, Math.min(rounds, 20), Math.min(seconds, 30), pin);
    if (only.length === 0 || only.includes("agent")) await agentLatency(prefix, 30, 300_000);
  } finally {
    await cleanupPrefix(`${prefix}-`);
  }
}

await main();
