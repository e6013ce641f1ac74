/**
 * Cluster benchmark (issue 11 item 11; needs root and etcd): 3 real nodes
 * (agent processes in node namespaces on an underlay, one etcd) while 100
 * simulated nodes x 100 endpoints are registered in etcd with the real key
 * layout (cluster-sim.ts), so each real agent holds 10,000 remote endpoints.
 *
 *   npm run bench -- cluster [--quick] [--sim-nodes=100] [--sim-endpoints=100] [--label-sets=50]
 *                            [--creates=30] [--new-label-creates=10] [--applies=40] [--idle-seconds=10]
 *                            [--prefix=cb]                            -> one JSON line per figure
 *
 *   lab (etcd, underlay, 3 agents) --> prober pod per node, policy cb-prop
 *   --> simulated nodes written --> ingested by every agent (kernel read-back) : write/ingest time, agent CPU
 *   --> agent memory and idle CPU with 10,000 remote endpoints
 *   --> propagation (create on A -> enforced on B: real packet and kernel read-back), etcd writes per create
 *   --> creates with new label sets (identity allocation included), etcd writes per create
 *   --> policy apply (straight to etcd) -> realized on all 3 nodes
 *
 * Every figure line carries its target, whether it holds (`ok`), the raw
 * samples and the machine's load average (the machine may be shared).
 * Everything is removed at the end, on failure and on SIGINT/SIGTERM:
 * agents and monitors (by process group), `<prefix>*` namespaces, etcd.
 */
import { randomBytes } from "node:crypto";
import { loadavg } from "node:os";
import { Probe } from "../src/probe/probe.js";
import type { EtcdStore, StoreLease } from "../src/store/etcd.js";
import { applyText, applyPolicy, PROBE_POLICY, RealizedWatch } from "./cluster-apply.js";
import { CLUSTER_SPEC, clusterSettings, type ClusterSettings } from "./cluster-args.js";
import { benchArgs } from "./cli.js";
import { etcdWrites, writesPer } from "./cluster-etcd.js";
import { untilKernel } from "./cluster-kernel.js";
import { cpuMs, rssMiB, startClusterLab, type ClusterLab } from "./cluster-lab.js";
import { createEndpoint, propagateOnce, type Sample } from "./cluster-propagation.js";
import { SIM_ID_BASE, writeSims } from "./cluster-sim.js";
import { has, pct, r1 } from "./traffic.js";

const load = (): number => r1(loadavg()[0] ?? 0);
const out = (o: Record<string, unknown>): void =>
  console.log(JSON.stringify({ bench: "cluster", ...o, load1m: load() }));
const stats = (ms: readonly number[]) => ({
  samples: ms.length,
  p50Ms: r1(pct(ms, 0.5)),
  p99Ms: r1(pct(ms, 0.99)),
  maxMs: r1(Math.max(...ms)),
});
const CAP_MS = 120_000; // safety nets, not measurements

async function run(lab: ClusterLab, kv: EtcdStore, s: ClusterSettings): Promise<void> {
  const nodes = lab.nodes;
  const names = nodes.map((n) => n.name);
  const pids = nodes.map((n) => n.proc.pid as number);
  const cpus = (): number[] => pids.map(cpuMs);
  const realized = new RealizedWatch(kv);
  const probes = new Map<string, Probe>();
  let lease: StoreLease | undefined;
  await realized.start();
  try {
    // The probers: one pod per node, allowed to reach only app=cb-new.
    const rev = await applyText(kv, PROBE_POLICY);
    if ((await realized.until(names, rev, performance.now() + CAP_MS)) === false)
      throw new Error("the probe policy was not realized on every node");
    for (const n of nodes) {
      const v = await createEndpoint(n.client, "cbprobe", { app: "cb-probe" });
      probes.set(n.name, Probe.start(v.netns));
    }

    // 1. The simulated cluster, ingested by every real agent.
    const sim = { nodes: s.simNodes, endpoints: s.simEndpoints, labelSets: s.labelSets, stem: lab.prefix };
    const total = s.simNodes * s.simEndpoints;
    const cpu0 = cpus();
    const w0 = await etcdWrites(kv, lab.etcd.endpoint);
    lease = await kv.grantLease(60, () => undefined);
    const t0 = performance.now();
    const txns = await writeSims(kv, lease, sim);
    const writeMs = performance.now() - t0;
    const w1 = await etcdWrites(kv, lab.etcd.endpoint);
    // The last endpoint of every simulated node, with the identity its node claimed.
    const idOf = new Map<string, number>();
    for (let n = 0; n < s.simNodes; n++) {
      const j = s.simEndpoints - 1;
      idOf.set(
        `10.${64 + (n >> 8)}.${n & 255}.${j + 2}`,
        SIM_ID_BASE + ((n * s.simEndpoints + j) % s.labelSets),
      );
    }
    const ips = [...idOf.keys()];
    const ingestMs = await Promise.all(
      nodes.map(async (n) => {
        const ok = await untilKernel(n.netns, lab.table, ips, (ip, id) => idOf.get(ip) === id, CAP_MS, 250);
        return ok ? Math.round(performance.now() - t0) : undefined;
      }),
    );
    const cpu1 = cpus();
    const remote = await Promise.all(
      nodes.map(async (n) => {
        const l = (await n.client.request("GET", "/v1/remote-endpoints")) as {
          ip: string;
          identity: number;
        }[];
        const sims = l.filter((e) => e.ip.startsWith("10.6") || e.ip.startsWith("10.7"));
        return {
          remote: l.length,
          sims: sims.length,
          asClaimed: sims.filter((e) => e.identity >= SIM_ID_BASE).length,
        };
      }),
    );
    out({
      figure: "simulated-cluster-ingest",
      simNodes: s.simNodes,
      endpointsPerNode: s.simEndpoints,
      labelSets: s.labelSets,
      writeMs: Math.round(writeMs),
      writeTxns: txns,
      etcdWrites: writesPer(w0, w1, 1),
      // Until each real node's kernel maps the last endpoint of every simulated node (polled every 250 ms).
      ingestMsPerNode: ingestMs,
      agentCpuMsPerNode: cpu1.map((c, i) => c - (cpu0[i] as number)),
      remoteEndpointsPerNode: remote,
      ok: ingestMs.every((x) => x !== undefined) && remote.every((r) => r.sims === total),
    });

    // 2. Agent memory and idle CPU with the 10,000 remote endpoints.
    const c0 = cpus();
    await new Promise((r) => setTimeout(r, s.idleSeconds * 1000));
    const c1 = cpus();
    const mem = pids.map(rssMiB);
    out({
      figure: "agent-memory-cpu",
      remoteEndpoints: remote.map((r) => r.remote),
      rssMiB: mem.map((m) => m.rss),
      peakRssMiB: mem.map((m) => m.hwm),
      idleCpuPercent: c1.map((c, i) => r1(((c - (c0[i] as number)) / (s.idleSeconds * 1000)) * 100)),
      idleSeconds: s.idleSeconds,
      target: "rss < 300 MiB at 10,000 remote endpoints",
      ok: mem.every((m) => m.rss < 300),
    });

    // 3. Propagation: the label set's first create (identity allocation) apart, then rotating A.
    const warm = await propagateOnce(nodes, probes, lab.table, nodes[0]!, "cbnew-warm");
    const samples: Sample[] = [];
    const pc0 = cpus();
    const pw0 = await etcdWrites(kv, lab.etcd.endpoint);
    for (let i = 0; i < s.creates; i++)
      samples.push(
        ...(await propagateOnce(nodes, probes, lab.table, nodes[i % nodes.length]!, `cbnew-${i}`)),
      );
    const pw1 = await etcdWrites(kv, lab.etcd.endpoint);
    const pc1 = cpus();
    const packet = samples.map((x) => x.packetMs).filter((x): x is number => x !== undefined);
    const kernel = samples.map((x) => x.kernelMs).filter((x): x is number => x !== undefined);
    const p = stats(packet);
    out({
      figure: "propagation",
      method: "real packet: B's prober pod, egress allowed only to the new pod's labels, SYN every 10 ms",
      remoteEndpoints: total,
      creates: s.creates,
      ...p,
      missing: samples.length - packet.length,
      kernel: {
        method: "nft get element on B every 20 ms after A answered: end of the first read that shows it",
        ...stats(kernel),
        missing: samples.length - kernel.length,
        lowerBoundP50Ms: r1(
          pct(
            samples.map((x) => x.kernelLoMs ?? x.createMs),
            0.5,
          ),
        ),
        readMsP50: r1(
          pct(
            samples.map((x) => x.kernelReadMs ?? NaN).filter((x) => !isNaN(x)),
            0.5,
          ),
        ),
      },
      createP50Ms: r1(
        pct(
          samples.map((x) => x.createMs),
          0.5,
        ),
      ),
      warmup: warm.map((x) => ({
        to: x.to,
        packetMs: x.packetMs && r1(x.packetMs),
        kernelMs: x.kernelMs && r1(x.kernelMs),
      })),
      rawPacketMs: samples.map((x) => (x.packetMs === undefined ? null : Math.round(x.packetMs))),
      rawKernelMs: samples.map((x) => (x.kernelMs === undefined ? null : Math.round(x.kernelMs))),
      agentCpuMsPerCreate: pc1.map((c, i) => r1((c - (pc0[i] as number)) / Math.max(1, s.creates))),
      target: "p99 < 1000 ms",
      ok: packet.length === samples.length && p.p99Ms < 1000,
    });
    out({
      figure: "etcd-writes-per-endpoint",
      labels: "an existing label set (identity held by every node)",
      creates: s.creates,
      perCreate: writesPer(pw0, pw1, Math.max(1, s.creates)),
    });

    // 4. Creates with a label set of their own: identity claims on A, then on B and C as they learn it.
    const nw0 = await etcdWrites(kv, lab.etcd.endpoint);
    const newMs: number[] = [];
    for (let i = 0; i < s.newLabelCreates; i++) {
      const a = nodes[i % nodes.length]!;
      const t = performance.now();
      const v = await createEndpoint(a.client, `cbuniq-${i}`, { app: `cb-uniq-${i}` });
      const seen = await Promise.all(
        nodes
          .filter((n) => n !== a)
          .map((b) => untilKernel(b.netns, lab.table, [v.ipv4], (_, id) => id === v.identity, CAP_MS, 20)),
      );
      if (seen.every(Boolean)) newMs.push(performance.now() - t);
    }
    const nw1 = await etcdWrites(kv, lab.etcd.endpoint);
    if (s.newLabelCreates > 0)
      out({
        figure: "etcd-writes-per-endpoint",
        labels: "a new label set per create (identity claimed by A, then by each node that learns it)",
        creates: s.newLabelCreates,
        perCreate: writesPer(nw0, nw1, Math.max(1, s.newLabelCreates)),
        // Create -> both peers' kernels map it (`nft get element` polled every 20 ms: each read costs
        // ~1-2 s itself at 10,000 remote endpoints, so this is an upper bound).
        enforcedEverywhere: { ...stats(newMs), rawMs: newMs.map(Math.round) },
      });

    // 5. Policy apply -> realized (kernel took it) on all 3 nodes.
    const ac0 = cpus();
    const applies: number[] = [];
    for (let i = 0; i < s.applies; i++) {
      const t = performance.now();
      const r = await applyText(kv, applyPolicy(i));
      const at = await realized.until(names, r, t + CAP_MS);
      if (at !== false) applies.push(at - t);
    }
    const ac1 = cpus();
    const ap = stats(applies);
    if (s.applies > 0)
      out({
        figure: "policy-apply-all-nodes",
        method:
          "txn to etcd (as membrane apply --cluster-store) -> every node's cluster/status realizedRevision",
        remoteEndpoints: total,
        ...ap,
        missing: s.applies - applies.length,
        rawMs: applies.map(Math.round),
        agentCpuMsPerApply: ac1.map((c, i) => r1((c - (ac0[i] as number)) / Math.max(1, s.applies))),
        target: "p99 < 500 ms",
        ok: applies.length === s.applies && ap.p99Ms < 500,
      });
  } finally {
    for (const pr of probes.values()) pr.stop();
    await realized.stop().catch(() => undefined);
    await lease?.revoke().catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const s: ClusterSettings = clusterSettings(benchArgs(CLUSTER_SPEC).flags);
  if (process.getuid?.() !== 0) return out({ skipped: "needs root (network namespaces, nftables)" });
  for (const bin of ["ip", "nft", "etcd"])
    if (!has(bin)) return out({ skipped: `needs ${bin} (scripts/install-system-deps.sh)` });
  const prefix = s.stem + randomBytes(3).toString("hex");
  let lab: ClusterLab | undefined;
  let kv: EtcdStore | undefined;
  const cleanup = async (): Promise<void> => {
    await kv?.close().catch(() => undefined);
    await lab?.stop();
  };
  const onSignal = (): void => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    const t = performance.now();
    lab = await startClusterLab(prefix, 3);
    out({ figure: "lab-start", nodes: 3, ms: Math.round(performance.now() - t), prefix });
    kv = lab.etcd.store();
    await run(lab, kv, s);
  } catch (e) {
    out({ figure: "error", error: (e instanceof Error ? e.message : String(e)).slice(0, 2000), ok: false });
    process.exitCode = 1;
  } finally {
    await cleanup();
  }
}

await main();
