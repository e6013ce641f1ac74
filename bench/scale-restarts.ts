/**
 * Section 4b of the scale benchmark (scale.ts): the first policy apply after each of
 * `--restarts=N` more agent restarts (the tail of the apply figure is that first apply:
 * the restart's background checks start beside it). Per restart: the apply's wall
 * time, the agent's main-thread CPU (its event loop alone) and the process CPU (with
 * its worker threads: the background check's reader), and whether the check was
 * cancelled by that apply (Reconciler.stats.checksCancelled).
 */
import type { RunningAgent } from "../src/agent/run.js";
import { mainThreadCpuMs } from "./scale-cpu.js";
import { policies } from "./scale-world.js";
import { pct, r1 } from "./traffic.js";

export interface RestartsParams {
  readonly restarts: number;
  /** Stops the running agent and starts it again; returns the new one. */
  readonly restart: () => Promise<RunningAgent>;
  /** The policy variant of the first apply (each apply must change the kernel). */
  readonly firstVariant: number;
  readonly common: Record<string, unknown>;
  readonly out: (o: Record<string, unknown>) => void;
}

export async function firstApplies(p: RestartsParams): Promise<RunningAgent | undefined> {
  const wall: number[] = [];
  const main: number[] = [];
  const proc: number[] = [];
  const cancelled: number[] = [];
  const writeMs: number[] = [];
  const planMs: number[] = [];
  const checking: boolean[] = [];
  let running: RunningAgent | undefined;
  for (let i = 0; i < p.restarts; i++) {
    running = await p.restart();
    const c = process.cpuUsage();
    const m = mainThreadCpuMs();
    checking.push(running.agent.reconciler.checkRunning);
    const t = performance.now();
    await running.agent.applyPolicies(policies(p.firstVariant + i), "bench.yaml");
    wall.push(performance.now() - t);
    writeMs.push(running.agent.reconciler.lastTimings.writeMs);
    planMs.push(running.agent.reconciler.lastTimings.planMs);
    main.push(mainThreadCpuMs() - m);
    const d = process.cpuUsage(c);
    proc.push((d.user + d.system) / 1000);
    cancelled.push(running.agent.reconciler.stats.checksCancelled);
  }
  if (wall.length > 0)
    p.out({
      figure: "policy-apply-first-after-restart",
      ...p.common,
      samples: wall.length,
      p50Ms: r1(pct(wall, 0.5)),
      maxMs: r1(Math.max(...wall)),
      rawMs: wall.map(Math.round),
      rawMainThreadCpuMs: main.map(Math.round),
      rawAgentCpuMs: proc.map(Math.round),
      checksCancelled: cancelled,
      rawWriteMs: writeMs.map(Math.round),
      rawPlanMs: planMs.map(Math.round),
      checkRunningAtStart: checking,
      target: "p99 < 100 ms (as policy-apply)",
      ok: Math.max(...wall) < 100,
    });
  return running;
}
