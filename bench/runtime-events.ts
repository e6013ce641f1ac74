/**
 * Runtime events (issue 15): the process event source's cost and capacity.
 *
 *   overhead: a fork/exec loop (`bash` running /bin/true N times), CPU time of
 *             the loop (user+sys, its children included) without and with the
 *             source attached, rounds interleaved off/on/off/on (the source is
 *             started and stopped between rounds); plus the CPU the source
 *             itself used (bpftrace child and this process) per exec.
 *   rate:     parallel exec loops as fast as the machine goes; records per
 *             second received, and lost (kernel perf buffer) / malformed counted.
 *             Bounded by how fast the loops exec: it shows that nothing is lost
 *             at the workload's rate, not the source's ceiling.
 *
 * One JSON line (`bench: "runtime-events"`), with the load average. Needs root and bpftrace.
 *   node dist/bench/runtime-events.js [--execs=2000] [--rounds=2] [--quick]
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { BpftraceSource } from "../src/runtime/source/bpftrace.js";

const arg = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a ? Number(a.split("=")[1]) : dflt;
};
const quick = process.argv.includes("--quick");
const EXECS = arg("execs", quick ? 1000 : 3000);
const ROUNDS = arg("rounds", quick ? 2 : 3);
const r3 = (x: number): number => Math.round(x * 1000) / 1000;

/** CPU seconds (user + sys, children included) of a bash loop of `n` execs of /bin/true. */
function execLoop(n: number): { cpuS: number; wallS: number } {
  const t0 = process.hrtime.bigint();
  const r = spawnSync("bash", ["-c", `for ((i=0;i<${n};i++)); do /bin/true; done; times`], {
    encoding: "utf8",
  });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  // `times`: two lines "XmY.YYYs XmY.YYYs" (shell, then children)
  let cpuS = 0;
  for (const m of r.stdout.matchAll(/(\d+)m([\d.]+)s/g)) cpuS += Number(m[1]) * 60 + Number(m[2]);
  return { cpuS, wallS };
}

/** utime + stime of a process, in seconds (/proc/<pid>/stat; USER_HZ 100). */
function procCpuS(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, not its children
  } catch {
    return 0;
  }
}

async function withSource<T>(f: (s: BpftraceSource, got: () => number) => Promise<T>): Promise<T> {
  let records = 0;
  const s = new BpftraceSource({ onRecord: () => void records++, onDrop: () => undefined });
  await s.start();
  // bpftrace says "attached" before the verifier is done: wait for the first exec record.
  const deadline = Date.now() + 180_000;
  while (records === 0 && Date.now() < deadline) {
    spawnSync("/bin/true");
    await new Promise((r) => setTimeout(r, 200));
  }
  try {
    return await f(s, () => records);
  } finally {
    await s.stop();
  }
}

async function main(): Promise<void> {
  const off: number[] = [];
  const on: number[] = [];
  const sourceCpuPerExecUs: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    off.push(execLoop(EXECS).cpuS);
    await withSource(async (s) => {
      const c0 = procCpuS(s.pid);
      const u0 = process.cpuUsage();
      on.push(execLoop(EXECS).cpuS);
      await new Promise((r) => setTimeout(r, 300)); // the tail of the records
      const u = process.cpuUsage(u0);
      const bpf = procCpuS(s.pid) - (c0 - procCpuS(process.pid));
      sourceCpuPerExecUs.push((((u.user + u.system) / 1e6 + Math.max(0, bpf)) / EXECS) * 1e6);
    });
  }
  // events/s: 4 loops in parallel, records counted for the window they ran
  const rate = await withSource(async (s, got) => {
    const n0 = got();
    const t0 = process.hrtime.bigint();
    await Promise.all(
      [0, 1, 2, 3].map(
        () =>
          new Promise<void>((resolve) =>
            spawn("bash", ["-c", `for ((i=0;i<${EXECS};i++)); do /bin/true; done`]).once("exit", () =>
              resolve(),
            ),
          ),
      ),
    );
    await new Promise((r) => setTimeout(r, 300));
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    return {
      recordsPerS: Math.round((got() - n0) / secs),
      lost: s.counts.lost,
      malformed: s.counts.malformed,
      execs: 4 * EXECS,
    };
  });
  const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);
  console.log(
    JSON.stringify({
      bench: "runtime-events",
      execsPerRound: EXECS,
      rounds: ROUNDS,
      loopCpuS: { off: off.map(r3), on: on.map(r3) },
      overheadPct: r3(((sum(on) - sum(off)) / sum(off)) * 100),
      sourceCpuPerExecUs: sourceCpuPerExecUs.map((x) => Math.round(x)),
      rate,
      targets: { overheadPct: "< 5", recordsPerS: ">= 50000" },
      load1m: r3(loadavg()[0] ?? 0),
    }),
  );
}

await main();
