/**
 * The scale bench's ipcache figure (scale.ts): one remote endpoint with an
 * identity in use is added, then removed; each call is timed from the call to
 * the kernel's acknowledgement (the agent's in-process API: the figure measures
 * the agent, not a probe). Beside the wall clock, where each change's time went
 * (the agent's own cheap timings):
 *
 *   call --queue (work queue turn)--> validate --store (persisted)--> engine + desired
 *        --plan (delta)--> write (writer acknowledged) --> answer
 *
 * `--ipcache-check=ab` (bench only): rounds of changes alternate between "the
 * background check running" (the bench calls the Reconciler's verify() in a
 * loop, as the periodic resync would) and "no check", in one run; one line per
 * condition. Before the rounds, the bench waits for the check the restart started.
 */
import type { RunningAgent } from "../src/agent/run.js";
import type { Settings } from "./scale-args.js";
import { withLoopDelay } from "./scale-cpu.js";
import { remoteLabels } from "./scale-world.js";
import { pct, r1 } from "./traffic.js";

type Agent = RunningAgent["agent"];

interface Stages {
  total: number[];
  queue: number[];
  store: number[];
  compute: number[];
  plan: number[];
  write: number[];
}

const newStages = (): Stages => ({ total: [], queue: [], store: [], compute: [], plan: [], write: [] });

const p50p99 = (ms: readonly number[]): { p50: number; p99: number; max: number } => ({
  p50: r1(pct(ms, 0.5)),
  p99: r1(pct(ms, 0.99)),
  max: r1(Math.max(...ms)),
});

/** One change, timed, its stages recorded in `st`. */
async function change(agent: Agent, st: Stages, f: () => Promise<{ kernelOps: number }>): Promise<number> {
  const t = performance.now();
  const r = await f();
  const ms = performance.now() - t;
  if (r.kernelOps === 0) throw new Error("an ipcache change changed nothing in the kernel");
  const c = agent.remoteEndpoints.lastTimings;
  const a = agent.reconciler.lastTimings;
  st.total.push(ms);
  st.queue.push(c.queueMs);
  st.store.push(c.storeMs);
  st.plan.push(a.planMs);
  st.write.push(a.writeMs);
  st.compute.push(c.enforceMs - a.planMs - a.writeMs);
  return ms;
}

function stageFigures(st: Stages): Record<string, unknown> {
  return {
    samples: st.total.length,
    p50Ms: r1(pct(st.total, 0.5)),
    p99Ms: r1(pct(st.total, 0.99)),
    maxMs: r1(Math.max(...st.total)),
    stagesMs: {
      queue: p50p99(st.queue),
      store: p50p99(st.store),
      compute: p50p99(st.compute),
      plan: p50p99(st.plan),
      write: p50p99(st.write),
    },
  };
}

export async function scaleIpcache(p: {
  agent: Agent;
  s: Settings;
  common: Record<string, unknown>;
  out: (o: Record<string, unknown>) => void;
}): Promise<void> {
  const { agent, s } = p;
  const spec = { ip: "10.200.0.1", namespace: "default", labels: remoteLabels(1) };
  const pair = async (st: Stages, add: number[], del: number[]): Promise<void> => {
    add.push(await change(agent, st, () => agent.remoteEndpoints.upsert([spec])));
    del.push(await change(agent, st, () => agent.remoteEndpoints.delete([spec.ip])));
  };
  if (s.ipcacheCheck === "ab") return ab(p, pair);
  const add: number[] = [];
  const del: number[] = [];
  const st = newStages();
  const t0 = performance.now();
  const { loopDelay, cpuMs, mainActiveMs } = await withLoopDelay(async () => {
    for (let i = 0; i < s.ipcacheChanges && performance.now() - t0 < s.capMs; i++) await pair(st, add, del);
  });
  if (add.length === 0) return;
  const n = Math.max(1, st.total.length);
  p.out({
    figure: "ipcache-change",
    ...p.common,
    ...stageFigures(st),
    addP50Ms: r1(pct(add, 0.5)),
    removeP50Ms: r1(pct(del, 0.5)),
    eventLoopDelay: loopDelay,
    cpuMsPerChange: r1(cpuMs / n),
    mainThreadActiveMsPerChange: r1(mainActiveMs / n),
    target: "p99 < 20 ms",
    ok: r1(pct(st.total, 0.99)) < 20,
  });
}

/** Rounds of changes, alternating: the background check running in a loop, or not. */
async function ab(
  p: Parameters<typeof scaleIpcache>[0],
  pair: (st: Stages, add: number[], del: number[]) => Promise<void>,
): Promise<void> {
  const { agent, s } = p;
  const r = agent.reconciler;
  const until = performance.now() + 120_000;
  while (r.stats.checksOffThread === 0 && performance.now() < until)
    await new Promise((res) => setTimeout(res, 50));
  const st = { check: newStages(), idle: newStages() };
  const cpu = { check: 0, idle: 0 };
  const checks = { check: 0 };
  const perRound = 5;
  const rounds = Math.max(2, Math.ceil(s.ipcacheChanges / perRound));
  for (let i = 0; i < rounds * 2; i++) {
    const cond = i % 4 === 0 || i % 4 === 3 ? "check" : "idle"; // ABBA
    let on = cond === "check";
    const loop = (async () => {
      while (on) {
        await r.verify();
        checks.check++;
      }
    })();
    // Let a check get going before the first change of the round.
    if (on) await new Promise((res) => setTimeout(res, 100));
    const c0 = process.cpuUsage();
    for (let k = 0; k < perRound; k++) await pair(st[cond], [], []);
    const c = process.cpuUsage(c0);
    cpu[cond] += (c.user + c.system) / 1000;
    on = false;
    await loop;
  }
  for (const cond of ["check", "idle"] as const)
    p.out({
      figure: "ipcache-change-ab",
      condition: cond,
      ...p.common,
      ...stageFigures(st[cond]),
      cpuMsPerChange: r1(cpu[cond] / Math.max(1, st[cond].total.length)),
      ...(cond === "check" ? { checksCompleted: checks.check } : {}),
    });
}
