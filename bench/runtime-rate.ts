/**
 * TracingPolicy events per second through the agent's own pipeline (issue 15 item 7: ">= 50,000
 * events/s sustained, with loss counted"), with the loss counted on the kernel side.
 *
 *   workload: P processes in an endpoint's namespace open(2) a path that does not exist, paced to a
 *             total offered rate (bench/native/rt-loops.c flood; rate 0 = as fast as they go).
 *   policy:   a TracingPolicy selecting that endpoint, sys_openat with a Prefix matchArgs on the path,
 *             action Post: one event per open, served by the syscall guard (our sys_enter program).
 *   pipeline: as the agent wires it (bench/runtime-agent.ts): ring buffer -> loader -> decode ->
 *             policy event -> process cache and pod -> Tetragon JSON line (file) + metrics + ring.
 *   counted:  opens made (the workload's own count), events exported (tetragon_policy_events_total),
 *             lost in the kernel (ring-buffer reserve failures, the loader's counter), lost to the
 *             agent's per-policy budget; `unaccounted` = opens - exported - lost (0 when every event is
 *             either exported or counted). Sustained rate = exported / (flood time + the tail until
 *             the last event was exported); the agent's and the loader's CPU per event (robust to load:
 *             1e6 / agentCpuUsPerEvent is the pipeline's ceiling on one core); `heldForProcess`: events
 *             that waited for their process's records (the event cache), `withoutExecId`: those that
 *             went out without (the flood's processes start before it: both stay near 0).
 *
 * One JSON line (`bench: "runtime-rate"`) with the load average. Needs root and gcc. Profile the agent
 * side with `node --cpu-prof --cpu-prof-dir=/tmp/m4r-prof dist/bench/runtime-rate.js`.
 *   node dist/bench/runtime-rate.js [--rates=25000,50000,75000,0] [--seconds=5] [--procs=2] [--quick]
 */
import { statSync, truncateSync } from "node:fs";
import { benchArgs, custom, flag, int } from "./cli.js";
import { childrenNamed, load, procCpuS, r3, RuntimeLab, sleep } from "./runtime-agent.js";

const { flags } = benchArgs({
  script: "runtime-rate",
  runner: "runtime-rate",
  measures: "TracingPolicy events per second through the agent's own pipeline (ring buffer -> loader -> decode -> Tetragon JSON + metrics), at paced offered rates and unpaced, with the loss counted in the kernel and at the agent's budget, and the agent's CPU per event. One JSON line with the load average.", // prettier-ignore
  root: "BPF programs and an endpoint's namespace; needs gcc",
  flags: {
    rates: custom({
      help: "offered rates, total events/s (0: as fast as the workload goes)",
      value: "N,N",
      default: undefined as readonly number[] | undefined,
      shown: "25000,50000,75000,0; 50000,0 with --quick",
      parse: (v) => {
        const xs = v.split(",").map((x) => (/^\d+$/.test(x) ? Number(x) : NaN));
        if (xs.some((x) => !Number.isSafeInteger(x) || x > 10_000_000))
          throw new Error("give whole rates from 0 to 10000000, separated by commas");
        return xs;
      },
    }),
    seconds: custom({
      help: "flood time per rate, seconds",
      value: "S",
      default: undefined as number | undefined,
      shown: "5; 2 with --quick",
      parse: (v) => {
        const x = /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
        if (!(x >= 0.5 && x <= 600)) throw new Error("give seconds from 0.5 to 600");
        return x;
      },
    }),
    procs: int({ help: "workload processes", min: 1, max: 64, default: 2 }),
    quick: flag("the smaller sizes (a smoke run)"),
  },
});
const quick = flags.quick;
const RATES = [...(flags.rates ?? (quick ? [50_000, 0] : [25_000, 50_000, 75_000, 0]))];
const SECONDS = flags.seconds ?? (quick ? 2 : 5);
const PROCS = flags.procs;
const POLICY_NAME = "bench-flood";

const policy = (prefix: string): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${POLICY_NAME}}
spec:
  podSelector: {matchLabels: {app: flood}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Prefix, values: [${prefix}]}]
      matchActions: [{action: Post}]
`;

/** process_kprobe events of the policy the pipeline exported (its metric, counted as the line is written). */
async function exported(lab: RuntimeLab): Promise<number> {
  const m = lab.registry.getSingleMetric("tetragon_policy_events_total");
  if (!m) return 0;
  const v = await m.get();
  return v.values.filter((x) => x.labels["policy"] === POLICY_NAME).reduce((n, x) => n + x.value, 0);
}

function lost(lab: RuntimeLab): { kernel: number; agent: number } {
  const st = lab.tracing?.list().find((s) => s.name === POLICY_NAME);
  return { kernel: st?.lost.kernel ?? 0, agent: st?.lost.agent ?? 0 };
}

async function step(lab: RuntimeLab, rate: number, path: string): Promise<Record<string, unknown>> {
  truncateSync(lab.exportPath, 0); // the export grows ~1 KB per event
  const loader = childrenNamed("membrane-syscall-guard")[0];
  const e0 = await exported(lab);
  const l0 = lost(lab);
  const cache0 = eventCache(lab);
  const agent0 = process.cpuUsage();
  const loader0 = procCpuS(loader);
  const loadBefore = load();
  const t0 = process.hrtime.bigint();
  const [opens = 0, wallNs = 0, cpuNs = 0] = await lab.inEndpoint([
    "flood",
    String(PROCS),
    String(SECONDS),
    String(rate),
    path,
  ]);
  const floodS = wallNs / 1e9;
  const tEnd = process.hrtime.bigint();
  // The tail: until nothing new came for 500 ms (bounded); the last arrival ends the window.
  let last = await exported(lab);
  let lastAt = process.hrtime.bigint();
  let seen = last + lost(lab).kernel + lost(lab).agent;
  for (let quiet = 0; quiet < 5 && Number(process.hrtime.bigint() - tEnd) < 60e9;) {
    await sleep(100);
    const now = await exported(lab);
    const all = now + lost(lab).kernel + lost(lab).agent;
    if (now !== last) {
      last = now;
      lastAt = process.hrtime.bigint();
    }
    quiet = all === seen ? quiet + 1 : 0;
    seen = all;
  }
  const tailS = Math.max(0, Number(lastAt - tEnd) / 1e9);
  const got = last - e0;
  const l1 = lost(lab);
  const agent = process.cpuUsage(agent0);
  const agentCpuS = (agent.user + agent.system) / 1e6;
  const loaderCpuS = procCpuS(loader) - loader0;
  const lostKernel = l1.kernel - l0.kernel;
  const lostAgent = l1.agent - l0.agent;
  const windowS = Number(lastAt - t0) / 1e9 || floodS;
  const cache1 = eventCache(lab);
  return {
    offeredRate: rate === 0 ? "unpaced" : rate,
    opens,
    floodS: r3(floodS),
    offeredPerS: Math.round(opens / floodS),
    exported: got,
    exportFileBytes: statSync(lab.exportPath).size,
    lostKernel,
    lostAgent,
    unaccounted: opens - got - lostKernel - lostAgent,
    // exported events that waited for their process's records, and those that went without exec_id
    heldForProcess: cache1.held - cache0.held,
    withoutExecId: cache1.missed - cache0.missed,
    tailS: r3(tailS),
    sustainedPerS: Math.round(got / Math.max(floodS, windowS)),
    keptUp: lostKernel === 0 && lostAgent === 0 && tailS < 1,
    workloadCpuNsPerOpen: Math.round(cpuNs / Math.max(1, opens)),
    agentCpuUsPerEvent: r3((agentCpuS / Math.max(1, got)) * 1e6),
    loaderCpuUsPerEvent: r3((loaderCpuS / Math.max(1, got)) * 1e6),
    agentCeilingPerCoreS: Math.round(got / Math.max(1e-9, agentCpuS)),
    loadavg: { before: loadBefore, after: load() },
  };
}

/** The runtime controller's event cache counts (src/runtime/event-cache.ts). */
function eventCache(lab: RuntimeLab): { held: number; missed: number } {
  const s = lab.runtime?.status() ?? {};
  return { held: Number(s["eventCacheHeld"] ?? 0), missed: Number(s["eventCacheMissed"] ?? 0) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log(JSON.stringify({ bench: "runtime-rate", skipped: "needs root" }));
    return;
  }
  const lab = new RuntimeLab("rate", "flood");
  const prefix = `/tmp/${lab.netns}-flood/`;
  try {
    await lab.start(policy(prefix));
    const steps: Record<string, unknown>[] = [];
    for (const rate of RATES) {
      process.stderr.write(`flood: ${rate || "unpaced"} opens/s, ${PROCS} processes, ${SECONDS} s\n`);
      steps.push(await step(lab, rate, `${prefix}no-such-file`));
      await sleep(500);
    }
    const best = steps
      .filter((s) => s["keptUp"] === true)
      .reduce((m, s) => Math.max(m, Number(s["sustainedPerS"])), 0);
    console.log(
      JSON.stringify({
        bench: "runtime-rate",
        what: "TracingPolicy Post events (openat in an endpoint) through the agent's pipeline to Tetragon JSON lines",
        procs: PROCS,
        seconds: SECONDS,
        steps,
        bestSustainedWithoutLossPerS: best,
        target: "eventsPerS >= 50000 sustained, loss counted",
        loadavg: load(),
      }),
    );
  } finally {
    await lab.close();
  }
}

await main();
