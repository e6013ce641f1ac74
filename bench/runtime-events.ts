/**
 * Runtime events (issue 15): the process event sources' cost and capacity, both sources side by
 * side in one run (native: our raw tracepoint programs and ring buffer; bpftrace: the fallback).
 *
 *   overhead: an exec loop (bench/native/fork-storm.c: vfork + exec /bin/true, N times), CPU time of
 *             the loop (user+sys, its children included: the BPF programs run in the exec'ing task)
 *             with no source, with native, with bpftrace; rounds interleaved (the order rotates, the
 *             source is started and stopped around each loop). Plus the CPU the source itself used
 *             (its loader or bpftrace child, and the decoding in this process) per event.
 *   rate:     a fork storm (P fork-storm processes of M forks each, fork + exit: two records per
 *             fork) with each source; records per second received over the storm, records lost in
 *             the kernel (ring/perf buffer full) counted, and the source's CPU per record (its
 *             ceiling on one core: 1e6 / cpuUsPerRecord records/s).
 *
 * One JSON line (`bench: "runtime-events"`), with the load average. Needs root, gcc, bpftrace.
 *   node dist/bench/runtime-events.js [--execs=2000] [--rounds=3] [--forks=50000] [--storms=2] [--quick]
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BpftraceSource } from "../src/runtime/source/bpftrace.js";
import { NativeSource } from "../src/runtime/source/native.js";
import type { ProcessSource } from "../src/runtime/source/source.js";
import { benchArgs, flag, int } from "./cli.js";

const { flags } = benchArgs({
  script: "runtime-events",
  runner: "runtime-events",
  measures: "The process event sources (native, bpftrace) side by side: the CPU an exec loop costs with each, and records/s with losses over a fork storm. One JSON line, with the load average.", // prettier-ignore
  root: "BPF programs; needs bpftrace and gcc",
  flags: {
    execs: int({ help: "execs per overhead loop", min: 1, max: 1_000_000, shown: "2000; 500 with --quick" }),
    rounds: int({ help: "interleaved rounds", min: 1, max: 100, shown: "3; 2 with --quick" }),
    forks: int({
      help: "forks per storm process",
      min: 1,
      max: 10_000_000,
      shown: "50000; 10000 with --quick",
    }),
    storms: int({ help: "fork-storm processes at once", min: 1, max: 64, default: 2 }),
    quick: flag("the smaller sizes (a smoke run)"),
  },
});
const quick = flags.quick;
const EXECS = flags.execs ?? (quick ? 500 : 2000);
const ROUNDS = flags.rounds ?? (quick ? 2 : 3);
const FORKS = flags.forks ?? (quick ? 10_000 : 50_000);
const STORMS = flags.storms;
const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const STORM_SRC = fileURLToPath(new URL("../../bench/native/fork-storm.c", import.meta.url));

type Kind = "off" | "native" | "bpftrace";

/** CPU seconds (user + sys, children included) of `cmd` run by bash (`times`). */
function cpuOf(cmd: string): number {
  const r = spawnSync("bash", ["-c", `${cmd} >/dev/null; times`], { encoding: "utf8" });
  let cpuS = 0;
  for (const m of r.stdout.matchAll(/(\d+)m([\d.]+)s/g)) cpuS += Number(m[1]) * 60 + Number(m[2]);
  return cpuS;
}

/** utime + stime of a process, in seconds (/proc/<pid>/stat; USER_HZ 100). */
function procCpuS(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

async function withSource<T>(
  kind: Exclude<Kind, "off">,
  f: (s: ProcessSource, got: () => number) => Promise<T>,
): Promise<T> {
  let records = 0;
  const params = { onRecord: () => void records++, onDrop: () => undefined };
  const s: ProcessSource = kind === "native" ? new NativeSource(params) : new BpftraceSource(params);
  await s.start(); // bpftrace: resolves once its canary exec was seen (its programs run)
  try {
    return await f(s, () => records);
  } finally {
    await s.stop();
  }
}

/** The source's own CPU (its child and this process) while `work` runs, and the records it got. */
async function measured(
  s: ProcessSource,
  got: () => number,
  work: () => Promise<void>,
): Promise<{ cpuS: number; records: number; wallS: number }> {
  const c0 = procCpuS(s.pid);
  const u0 = process.cpuUsage();
  const n0 = got();
  const t0 = process.hrtime.bigint();
  await work();
  // the tail: until no record came for 500 ms (bounded)
  for (let last = -1, i = 0; got() !== last && i < 120; i++) {
    last = got();
    await new Promise((r) => setTimeout(r, 500));
  }
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const u = process.cpuUsage(u0);
  return { cpuS: (u.user + u.system) / 1e6 + Math.max(0, procCpuS(s.pid) - c0), records: got() - n0, wallS };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log(JSON.stringify({ bench: "runtime-events", skipped: "needs root" }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "membrane-events-"));
  const storm = join(dir, "fork-storm");
  try {
    const cc = spawnSync("gcc", ["-O2", "-Wall", "-o", storm, STORM_SRC], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
    const loop = `${storm} ${EXECS} -e /bin/true`;
    const loopCpu: Record<Kind, number[]> = { off: [], native: [], bpftrace: [] };
    const sourceUsPerEvent: Record<"native" | "bpftrace", number[]> = { native: [], bpftrace: [] };
    const orders: Kind[][] = [
      ["off", "native", "bpftrace"],
      ["native", "bpftrace", "off"],
      ["bpftrace", "off", "native"],
    ];
    for (let round = 0; round < ROUNDS; round++) {
      for (const kind of orders[round % orders.length] as Kind[]) {
        process.stderr.write(`round ${round + 1}/${ROUNDS}: exec loop, ${kind}\n`);
        if (kind === "off") {
          loopCpu.off.push(cpuOf(loop));
          continue;
        }
        await withSource(kind, async (s, got) => {
          let cpu = 0;
          const m = await measured(s, got, async () => void (cpu = cpuOf(loop)));
          loopCpu[kind].push(cpu);
          sourceUsPerEvent[kind].push((m.cpuS / Math.max(1, m.records)) * 1e6);
        });
      }
    }
    const rate: Record<string, unknown> = {};
    for (const kind of ["native", "bpftrace"] as const) {
      process.stderr.write(`fork storm: ${STORMS} x ${FORKS} forks, ${kind}\n`);
      rate[kind] = await withSource(kind, async (s, got) => {
        let stormWallS = 0;
        const lost0 = s.counts.lost;
        const m = await measured(s, got, async () => {
          const t0 = process.hrtime.bigint();
          await Promise.all(
            Array.from(
              { length: STORMS },
              () =>
                new Promise<void>((resolve) => spawn(storm, [String(FORKS)]).once("exit", () => resolve())),
            ),
          );
          stormWallS = Number(process.hrtime.bigint() - t0) / 1e9;
        });
        const expected = 2 * STORMS * FORKS;
        return {
          forks: STORMS * FORKS,
          stormWallS: r3(stormWallS),
          workloadEventsPerS: Math.round(expected / stormWallS),
          receivedPerS: Math.round(m.records / stormWallS),
          received: m.records,
          lost: s.counts.lost - lost0,
          malformed: s.counts.malformed,
          drainWallS: r3(m.wallS),
          sourceCpuUsPerRecord: r3((m.cpuS / Math.max(1, m.records)) * 1e6),
          ceilingPerCoreS: Math.round(m.records / Math.max(1e-9, m.cpuS)),
        };
      });
    }
    const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
    const pct = (k: Kind): number => r3(((sum(loopCpu[k]) - sum(loopCpu.off)) / sum(loopCpu.off)) * 100);
    console.log(
      JSON.stringify({
        bench: "runtime-events",
        execsPerRound: EXECS,
        rounds: ROUNDS,
        loopCpuS: {
          off: loopCpu.off.map(r3),
          native: loopCpu.native.map(r3),
          bpftrace: loopCpu.bpftrace.map(r3),
        },
        overheadPct: { native: pct("native"), bpftrace: pct("bpftrace") },
        sourceCpuUsPerEvent: {
          native: sourceUsPerEvent.native.map(r3),
          bpftrace: sourceUsPerEvent.bpftrace.map(r3),
        },
        rate,
        targets: { overheadPct: "< 5", eventsPerS: ">= 50000" },
        load1m: r3(loadavg()[0] ?? 0),
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
