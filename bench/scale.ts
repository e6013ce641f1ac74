/**
 * Scale benchmark of the agent (needs root; issue 10 item 6): a node with
 * 250 or 1,000 local endpoints, 50,000 remote ipcache entries and 10,000
 * identities (remote endpoints registered in bulk through the agent's
 * remote-endpoints controller; the remote side has no namespaces).
 *
 *   npm run bench -- scale [--endpoints=250,1000] [--quick] [--cap-seconds=300]
 *                          [--skip=apply,ipcache,create,traffic] [--applies=N] [--creates=N] [--restarts=N] [--rounds=N]
 *                          [--pin=C,S|none] [--prefix=mbs] [--ipcache-check=ab]  -> one JSON line per figure
 *
 * --cap-seconds bounds the sampling of each latency figure (each line says how many samples it took);
 * --skip leaves figures out (to profile one: `node --cpu-prof dist/bench/scale.js ...`).
 * --restarts=N: N more restarts, each followed by one timed apply (the first after a restart);
 * --creates sets how many endpoint creates are timed; --prefix the stem of the scratch namespaces
 * (several runs side by side, e.g. an A/B against another build).
 *
 *   remote endpoints + policies --agent--> store      (then the kernel is emptied)
 *   + N endpoint records seeded into the store
 *   --> cold start --> restart --> policy apply --> ipcache change --> endpoint create
 *   --> traffic: no table vs Membrane, ABBA rounds, agent idle before each window (settle.ts)
 *
 * Every figure line carries its target and whether it holds (`ok`), and the
 * machine's load average when it was taken (the machine may be shared).
 * Scratch namespaces have the prefix "mbs<hex>" (or --prefix), removed at the end and on SIGINT.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { join } from "node:path";
import pino from "pino";
import type { AgentOptions, RunningAgent } from "../src/agent/run.js";
import { runRaw } from "../src/datapath/exec.js";
import { cleanupPrefix } from "../src/datapath/netns.js";
import { EmbeddedStore } from "../src/store/embedded.js";
import {
  BULK,
  LABEL_SETS,
  localLabels,
  policies,
  remoteEndpoint,
  REMOTES,
  seedEndpoints,
} from "./scale-world.js";
import { benchArgs } from "./cli.js";
import { scaleSettings, SCALE_SPEC, type Settings } from "./scale-args.js";
import { createPhases, mainThreadCpuMs, withLoopDelay, writerCpuMs } from "./scale-cpu.js";
import { scaleIpcache } from "./scale-ipcache.js";
import { firstApplies } from "./scale-restarts.js";
import { scaleTraffic, tableLoaded } from "./scale-traffic.js";
import { has, pct, r1 } from "./traffic.js";

/** The agent's modules load once the command line is read: --help answers without them (~2 s of CPU). */
const startAgent: typeof import("../src/agent/run.js").startAgent = async (...a) =>
  (await import("../src/agent/run.js")).startAgent(...a);

const load = (): number => r1(loadavg()[0] ?? 0);
const out = (o: Record<string, unknown>): void =>
  console.log(JSON.stringify({ bench: "scale", ...o, load1m: load() }));
const stats = (ms: readonly number[]) => ({
  samples: ms.length,
  p50Ms: r1(pct(ms, 0.5)),
  p99Ms: r1(pct(ms, 0.99)),
  maxMs: r1(Math.max(...ms)),
});

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).slice(0, 500);

/** Host-side veths in the node namespace: name -> ifindex (a recreated veth gets a new index). */
async function hostLinks(netns: string): Promise<Map<string, number>> {
  const r = await runRaw(["ip", "-o", "link", "show"], { netns });
  const m = new Map<string, number>();
  for (const line of r.stdout.split("\n")) {
    const x = /^(\d+): (mbr\d+)[@:]/.exec(line);
    if (x) m.set(x[2] as string, Number(x[1]));
  }
  return m;
}

/** Times `f` up to `n` times (or until `capMs` passed). */
async function sample(n: number, capMs: number, f: (i: number) => Promise<void>): Promise<number[]> {
  const ms: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < n && performance.now() - t0 < capMs; i++) {
    const t = performance.now();
    await f(i);
    ms.push(performance.now() - t);
  }
  return ms;
}

/** Temp directories in use, removed at the end and on SIGINT. */
const dirs = new Set<string>();

async function scaleAt(prefix: string, n: number, s: Settings): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "membrane-scale-"));
  dirs.add(dir);
  const o: AgentOptions = {
    stateDir: join(dir, "state"),
    socketPath: join(dir, "agent.sock"),
    nodeNetns: `${prefix}-node`,
    netnsPrefix: `${prefix}-`,
    podCidr4: "10.222.0.0/21",
    table: "membrane_scale",
    logGroup: 1,
    engine: {},
    logLevel: "silent",
    resyncMs: 0,
  };
  const log = pino({ level: "silent" });
  const common = { endpoints: n, remoteEndpoints: REMOTES, labelSets: LABEL_SETS };
  let running: RunningAgent | undefined = await startAgent(o, log);
  const agent = (): RunningAgent["agent"] => (running as RunningAgent).agent;
  try {
    // 1. The rest of the cluster, in bulk through the controller, and the policies.
    const bulk = await sample(REMOTES / BULK, Infinity, async (k) => {
      const chunk = Array.from({ length: BULK }, (_, i) => remoteEndpoint(k * BULK + i));
      await agent().remoteEndpoints.upsert(chunk);
    });
    out({ figure: "remote-endpoints-bulk", ...common, perRequest: BULK, ...stats(bulk) });
    await agent().applyPolicies(policies(0), "bench.yaml");
    await running.stop();
    running = undefined;
    // Nothing in the kernel: the next start is a cold one (as after a reboot).
    await cleanupPrefix(`${prefix}-`);

    // 2. Cold start: the store holds N endpoints (no namespaces), the remote endpoints and the policies.
    // With --grow=K the node gets there in steps of K endpoints, one agent start each (not a cold start:
    // for sizes whose cold start fails, so that the other figures can still be taken).
    const step = s.grow > 0 ? s.grow : n;
    for (let from = 0; from < n; from += step) {
      const store = await EmbeddedStore.open({ dir: join(o.stateDir, "store"), logger: log });
      await seedEndpoints(store, {
        from,
        n: Math.min(n, from + step),
        podCidr4: o.podCidr4,
        netnsPrefix: o.netnsPrefix,
      });
      await store.close();
      if (from + step >= n) break;
      const t1 = performance.now();
      running = await startAgent(o, log);
      await running.stop();
      running = undefined;
      out({
        figure: "grow-step",
        ...common,
        endpointsNow: from + step,
        ms: Math.round(performance.now() - t1),
      });
    }
    let t = performance.now();
    try {
      running = await startAgent(o, log);
    } catch (e) {
      // The figure is that it does not start: say so, with how long it tried.
      const ms = Math.round(performance.now() - t);
      out({
        figure: "agent-cold-start",
        ...common,
        ms,
        error: errorText(e),
        target: "< 60000 ms",
        ok: false,
      });
      return;
    }
    const coldMs = performance.now() - t;
    const loaded = await tableLoaded(o.nodeNetns as string, o.table);
    const eps = agent().listEndpoints();
    const entries = eps.map((e) => e.ingress.entries + e.egress.entries).sort((a, b) => a - b);
    out({
      figure: s.grow > 0 ? "agent-start-after-growth" : "agent-cold-start",
      ...common,
      ...(s.grow > 0 ? { newEndpoints: n - Math.floor((n - 1) / step) * step } : {}),
      ms: Math.round(coldMs),
      endpointsRestored: eps.length,
      remoteRestored: agent().remoteEndpoints.size,
      identities: agent().status().identities,
      mapStateEntriesPerEndpoint: { min: entries[0], median: pct(entries, 0.5), max: entries.at(-1) },
      tableLoaded: loaded,
      target: "< 60000 ms",
      ok: coldMs < 60_000 && loaded && eps.length === n,
    });

    // 3. Restart: nothing changed, so nothing to do in the kernel.
    const before = await hostLinks(o.nodeNetns as string);
    t = performance.now();
    await running.stop();
    running = undefined;
    const stopMs = performance.now() - t;
    t = performance.now();
    running = await startAgent(o, log);
    const restartMs = performance.now() - t;
    const after = await hostLinks(o.nodeNetns as string);
    const recreated = [...before].filter(([name, idx]) => after.get(name) !== idx).length;
    const ops = agent().status().lastApply.ops;
    out({
      figure: "agent-restart",
      ...common,
      ms: Math.round(restartMs),
      stopMs: Math.round(stopMs),
      kernelOps: ops,
      endpointsRecreated: recreated,
      target: "< 5000 ms with 0 kernel operations",
      ok: restartMs < 5000 && ops === 0 && recreated === 0,
    });

    // 4. Policy apply -> enforced (two texts alternate, so each apply changes the kernel).
    // CPU beside the wall clock (shared machine): the agent's and the nfnl writer's (its system time: nf_tables).
    const writer0 = writerCpuMs(process.pid);
    const changedPerApply = new Set<number>();
    const agentCpu: number[] = [];
    const mainCpu: number[] = [];
    const marks: [number, number, number][] = [];
    const {
      result: applies,
      loopDelay: apLoop,
      cpuMs: apCpu,
      mainActiveMs: apActive,
    } = await withLoopDelay(() =>
      sample(s.skip.has("apply") ? 0 : s.applies, s.capMs, async (i) => {
        const c = process.cpuUsage();
        const m = mainThreadCpuMs();
        const h = process.hrtime.bigint();
        const t0 = performance.now();
        const r = await agent().applyPolicies(policies(i + 1), "bench.yaml");
        const d = process.cpuUsage(c);
        marks.push([Number(h / 1000n), Number(process.hrtime.bigint() / 1000n), Math.round(t0)]);
        mainCpu.push(mainThreadCpuMs() - m);
        agentCpu.push((d.user + d.system) / 1000);
        if (r.kernelOps === 0) throw new Error("an apply changed nothing in the kernel");
        changedPerApply.add(r.endpointsChanged);
      }),
    );
    const ap = stats(applies);
    if (applies.length > 0) {
      const writer = writerCpuMs(process.pid);
      const per = (x: number): number => r1(x / applies.length);
      out({
        figure: "policy-apply",
        ...common,
        ...ap,
        endpointsChanged: [...changedPerApply],
        // In order: the first applies after the restart make the tail (issue 10).
        rawMs: applies.map((x) => Math.round(x)),
        rawAgentCpuMs: agentCpu.map((x) => Math.round(x)),
        // The agent's main thread alone (its event loop; the background check's worker thread left out).
        rawMainThreadCpuMs: mainCpu.map((x) => Math.round(x)),
        ...(process.env.SCALE_MARKS ? { marksUs: marks } : {}),
        // The agent's process CPU (all its threads, GC included) from call to answer, per apply.
        agentCpuMs: { p50: r1(pct(agentCpu, 0.5)), p99: r1(pct(agentCpu, 0.99)) },
        writerCpuMsPerApply: {
          user: per(writer.user - writer0.user),
          system: per(writer.system - writer0.system),
        },
        eventLoopDelay: apLoop,
        cpuMsPerApply: r1(apCpu / applies.length),
        mainThreadActiveMsPerApply: r1(apActive / applies.length),
        target: "p99 < 100 ms",
        ok: ap.p99Ms < 100,
      });
    }

    // 4b. The first apply after each of --restarts=N more restarts (scale-restarts.ts).
    if (s.restarts > 0 && !s.skip.has("apply")) {
      const again = async (): Promise<RunningAgent> => {
        await running?.stop();
        running = undefined;
        return (running = await startAgent(o, log));
      };
      const firstVariant = s.applies + 1;
      await firstApplies({ restarts: s.restarts, restart: again, firstVariant, common, out });
    }

    // 5. One ipcache entry: a remote endpoint with an identity in use is added, then removed.
    if (!s.skip.has("ipcache")) await scaleIpcache({ agent: agent(), s, common, out });

    // 6. Endpoint create at this size, with the agent's event-loop delay meanwhile (stalls show up there).
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const phases = createPhases();
    const cpu0 = process.cpuUsage();
    const creates = await sample(s.skip.has("create") ? 0 : s.creates, s.capMs, async (i) => {
      await agent().createEndpointRequest({
        name: `new${i}`,
        namespace: "default",
        labels: localLabels(n + i),
      });
    });
    loop.disable();
    const cpu = process.cpuUsage(cpu0);
    phases.stop();
    const cr = stats(creates);
    const eventLoopDelay = { p50Ms: r1(loop.percentile(50) / 1e6), maxMs: r1(loop.max / 1e6) };
    if (creates.length > 0) {
      const ok = cr.p99Ms < 100;
      out({
        figure: "endpoint-create",
        ...common,
        // Closed loop: each create is sent when the previous one answered (p99 of 20 = the slowest).
        arrival: "one at a time, back to back",
        ...cr,
        eventLoopDelay,
        // The agent's process CPU per create (this process: its threads and GC; not its children).
        agentCpuMsPerCreate: r1((cpu.user + cpu.system) / 1000 / creates.length),
        phasesP50Ms: phases.p50(),
        phasesMaxMs: phases.max(),
        // Raw: every create's latency in order, and the phases of the first three (after the restart).
        samplesMs: creates.map(r1),
        phasesFirst: phases.first(3),
        target: "p99 < 100 ms",
        ok,
      });
    }

    // 7. Traffic between two local endpoints: no table vs the table with the 50,000-entry ipcache.
    if (s.skip.has("traffic")) return;
    await scaleTraffic({
      agent: agent(),
      nodeNetns: o.nodeNetns as string,
      table: o.table,
      rounds: s.rounds,
      seconds: s.seconds,
      pin: s.pin,
      common,
      out,
    });
  } catch (e) {
    // The next size still runs; this one's remaining figures are missing, and the line says why.
    out({ figure: "error", ...common, error: errorText(e), ok: false });
  } finally {
    await running?.stop().catch(() => undefined);
    await cleanupPrefix(`${prefix}-`);
    await rm(dir, { recursive: true, force: true });
    dirs.delete(dir);
  }
}

async function main(): Promise<void> {
  const { sizes, settings, stem } = scaleSettings(benchArgs(SCALE_SPEC).flags);
  if (process.getuid?.() !== 0) return out({ skipped: "needs root (network namespaces, nftables)" });
  for (const bin of ["ip", "nft"])
    if (!has(bin)) return out({ skipped: `needs ${bin} (apt-get install iproute2 nftables)` });
  const prefix = stem + randomBytes(3).toString("hex");
  const onSignal = (): void =>
    void cleanupPrefix(`${prefix}-`)
      .then(() => Promise.all([...dirs].map((d) => rm(d, { recursive: true, force: true }))))
      .finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    for (const n of sizes) await scaleAt(prefix, n, settings);
  } finally {
    await cleanupPrefix(`${prefix}-`);
  }
}

await main().catch((e: unknown) => {
  // Flags were checked before anything was made (bench/cli.ts, exit 2); this is a failure of the run.
  process.stderr.write(`scale: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
