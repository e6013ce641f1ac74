/**
 * Kill latency (issue 15 item 7, "kill within 1 ms of the syscall"), the cost of a kill policy on an
 * open loop and on the process event source, and the start costs: the syscall guard (our own
 * sys_enter program) and bpftrace side by side in one run, rounds interleaved.
 *
 *   kill:     a victim in an endpoint's namespace writes CLOCK_MONOTONIC to a pipe immediately before
 *             open("/etc/shadow"); its parent (bench/native/kill-latency.c, not Node: no event loop in the
 *             path) waits for its death on a pidfd and reads the clock: latency = death seen - syscall.
 *             The same measure with no policy (the victim exits by itself right after the open) is the
 *             floor of the method: exit, reaping and the parent's wake-up, which every kill pays too.
 *             Beside it, the kernel's own view from a second bpftrace, all in the victim's kernel time (no
 *             scheduling of a waiter): sys_enter_openat("/etc/shadow") to signal_generate (SIGKILL sent),
 *             to signal_deliver (SIGKILL dequeued: no user code runs after it) and to sched_process_exit.
 *   overhead: the same namespace runs open+close of /etc/hostname N times, CPU time (user+sys) and wall
 *             time per open, rounds interleaved off / guard / bpftrace.
 *   rate:     the native process event source's records/s over a fork storm on the host, with no kill
 *             policy, with the guard's and with bpftrace's attached (their sys_enter programs run on
 *             every syscall of the storm): "events/s unchanged".
 *   start:    applying the kill policy (guard vs bpftrace), and the native event source's start with the
 *             BTF offsets cache warm vs off (the 5.4 MB BTF parsed), interleaved.
 *
 * JSON lines (`bench: "runtime-kill"`, "runtime-open-overhead", "runtime-kill-rate", "runtime-start"), each
 * with the load average. Needs root, bpftrace, gcc.
 *   node dist/bench/runtime-kill.js [--kills=300] [--opens=200000] [--rounds=3] [--forks=20000] [--quick]
 */
import { shadowKillPolicy } from "../src/cli/demo-runtime.js";
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { LabelSet } from "../src/labels/label.js";
import { RuntimeEnforcer } from "../src/runtime/enforce/enforcer.js";
import { NativeSource } from "../src/runtime/source/native.js";
import { parseTracingPolicies } from "../src/runtime/policy/parse.js";
import type { TracingPolicy } from "../src/runtime/policy/types.js";
import { benchArgs, flag, int } from "./cli.js";

const { flags } = benchArgs({
  script: "runtime-kill",
  runner: "runtime-kill",
  measures: "Syscall -> kill latency (the kernel's view and a waiter's), the open-loop cost and the event source's rate with a kill policy, and the start costs: the syscall guard vs bpftrace, rounds interleaved. JSON lines on stdout, with the load average.", // prettier-ignore
  root: "BPF programs, an endpoint's namespace; needs bpftrace and gcc",
  flags: {
    kills: int({ help: "kills per mode and round", min: 1, max: 100_000, shown: "300; 100 with --quick" }),
    opens: int({
      help: "opens per overhead window",
      min: 1,
      max: 10_000_000,
      shown: "200000; 50000 with --quick",
    }),
    rounds: int({ help: "interleaved rounds", min: 1, max: 100, shown: "3; 2 with --quick" }),
    forks: int({
      help: "forks of the storm for the rate",
      min: 1,
      max: 10_000_000,
      shown: "20000; 5000 with --quick",
    }),
    quick: flag("the smaller sizes (a smoke run)"),
  },
});
const quick = flags.quick;
const KILLS = flags.kills ?? (quick ? 100 : 300);
const OPENS = flags.opens ?? (quick ? 50_000 : 200_000);
const ROUNDS = flags.rounds ?? (quick ? 2 : 3);
const FORKS = flags.forks ?? (quick ? 5_000 : 20_000);
const STORM_SRC = fileURLToPath(new URL("../../bench/native/fork-storm.c", import.meta.url));
type Mode = "guard" | "bpftrace";
const MODES: readonly Mode[] = ["guard", "bpftrace"];
const SOURCE = fileURLToPath(new URL("../../bench/native/kill-latency.c", import.meta.url));

const POLICY = shadowKillPolicy("bench-no-shadow", "app: victim");

const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);
const ms = (ns: number): number => Math.round(ns / 1e3) / 1e3;

function pct(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

function summary(latNs: number[]): Record<string, number> {
  const s = [...latNs].sort((a, b) => a - b);
  return {
    p50Ms: ms(pct(s, 50)),
    p90Ms: ms(pct(s, 90)),
    p99Ms: ms(pct(s, 99)),
    maxMs: ms(s[s.length - 1] ?? NaN),
  };
}

/** The summary of the samples that were seen (a 0 is a point the tracer did not see). */
function seen(ns: number[]): Record<string, number> {
  const got = ns.filter((x) => x > 0);
  return { samples: got.length, ...summary(got) };
}

function run(argv: string[]): string {
  const r = spawnSync(argv[0] ?? "", argv.slice(1), { encoding: "utf8", maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${argv.join(" ")}: ${r.status} ${r.stderr}`);
  return r.stdout;
}

/** `n` victims; each line: latency ns and the signal that ended it. */
function victims(bin: string, netns: string, n: number): { ns: number; sig: number }[] {
  return run([bin, "wait", String(n), "ip", "netns", "exec", netns, bin, "victim"])
    .trim()
    .split("\n")
    .map((l) => {
      const [a, b] = l.split(" ");
      return { ns: Number(a), sig: Number(b) };
    });
}

/**
 * The kernel's clock at four points of each kill, all in the victim's own kernel time (no waiter is
 * scheduled in between): the openat's sys_enter (t0); signal_generate of SIGKILL to it (the kill
 * path's program sent it: guard or bpftrace); signal_deliver of SIGKILL in it (the task dequeues
 * the signal on its way back to user space: from here it never runs user code again); and
 * sched_process_exit. Beside them, the time the victim spent runnable but off the CPU between t0
 * and the delivery (from a sched_switch away from it while runnable, prev_state 0 or 0x100 when
 * preempted, until it runs again): the wait for a CPU that load adds, which the kill path does not
 * control. One line per victim: "K exit generate deliver waited" in ns after t0 (0: not seen).
 */
const TRACER = `tracepoint:syscalls:sys_enter_openat /comm == "kill-latency" && str(args->filename) == "/etc/shadow"/ { @t[pid] = nsecs; }
tracepoint:signal:signal_generate /args->sig == 9 && @t[args->pid]/ { @g[args->pid] = nsecs - @t[args->pid]; }
tracepoint:signal:signal_deliver /args->sig == 9 && @t[pid]/ { @d[pid] = nsecs - @t[pid]; }
tracepoint:sched:sched_switch /@t[args->prev_pid] && !@d[args->prev_pid] && (args->prev_state & 255) == 0/ { @off[args->prev_pid] = nsecs; }
tracepoint:sched:sched_switch /@off[args->next_pid]/ { @w[args->next_pid] += nsecs - @off[args->next_pid]; delete(@off[args->next_pid]); }
tracepoint:sched:sched_process_exit /@t[pid]/ { printf("K %d %d %d %d\\n", nsecs - @t[pid], @g[pid], @d[pid], @w[pid]); delete(@t[pid]); delete(@g[pid]); delete(@d[pid]); delete(@w[pid]); delete(@off[pid]); }
BEGIN { printf("READY\\n"); }
END { clear(@t); clear(@g); clear(@d); clear(@w); clear(@off); }`;

interface KernelSample {
  /** openat entry -> the process's exit. */
  readonly exitNs: number;
  /** openat entry -> SIGKILL generated for it (0: not seen). */
  readonly generateNs: number;
  /** openat entry -> SIGKILL delivered (dequeued) in it (0: not seen). */
  readonly deliverNs: number;
  /** Of that, runnable but waiting for a CPU (preempted), ns. */
  readonly waitedNs: number;
}

/** The kernel's view of each kill: openat entry to the process's exit (ns), from a second bpftrace. */
async function kernelTracer(): Promise<{ samples: KernelSample[]; stop: () => Promise<void> }> {
  const sh =
    '[ -d /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing; exec bpftrace -e "$1"';
  const c = spawn("unshare", ["--mount", "--propagation", "private", "sh", "-c", sh, "tracer", TRACER], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  const samples: KernelSample[] = [];
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: c.stdout }).on("line", (l) => {
      if (l === "READY") resolve();
      const m = /^K (\d+) (\d+) (\d+) (\d+)$/.exec(l);
      if (m)
        samples.push({
          exitNs: Number(m[1]),
          generateNs: Number(m[2]),
          deliverNs: Number(m[3]),
          waitedNs: Number(m[4]),
        });
    });
    c.once("exit", (code) => reject(new Error(`bpftrace tracer exited ${String(code)}`)));
  });
  return {
    samples,
    stop: async () => {
      const done = new Promise((r) => c.once("exit", r));
      c.kill("SIGINT");
      // Seen once: a SIGINT that bpftrace did not act on; it prints nothing we need at exit.
      const t = setTimeout(() => c.kill("SIGKILL"), 3000);
      await done;
      clearTimeout(t);
    },
  };
}

function openLoop(bin: string, netns: string): { wallNs: number; cpuNs: number } {
  const [wall, cpu] = run(["ip", "netns", "exec", netns, bin, "loop", String(OPENS)])
    .trim()
    .split(" ");
  return { wallNs: Number(wall), cpuNs: Number(cpu) };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log(JSON.stringify({ bench: "runtime-kill", skipped: "needs root" }));
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "m2r-kill-"));
  const bin = join(dir, "kill-latency");
  const storm = join(dir, "fork-storm");
  const netns = `m2rbench${randomBytes(3).toString("hex")}`;
  const sink = { onPolicyEvent: () => undefined };
  const enfs: Record<Mode, RuntimeEnforcer> = {
    guard: new RuntimeEnforcer({ sink, syscallGuard: "native" }),
    bpftrace: new RuntimeEnforcer({ sink, syscallGuard: "bpftrace" }),
  };
  try {
    run(["gcc", "-O2", "-Wall", "-o", bin, SOURCE]);
    run(["gcc", "-O2", "-Wall", "-o", storm, STORM_SRC]);
    run(["ip", "netns", "add", netns]);
    const ep = {
      key: `bench/${netns}`,
      labels: LabelSet.fromMap({ app: "victim", "io.kubernetes.pod.namespace": "bench" }),
      netnsInode: statSync(`/run/netns/${netns}`).ino,
    };
    for (const m of MODES) await enfs[m].setEndpoints([ep]);
    const [policy] = parseTracingPolicies(POLICY, "bench.yaml") as [TracingPolicy];
    const applyMs: Record<Mode, number[]> = { guard: [], bpftrace: [] };
    const on = async (m: Mode): Promise<void> => {
      const t0 = process.hrtime.bigint();
      await enfs[m].apply(policy);
      applyMs[m].push(Number(process.hrtime.bigint() - t0) / 1e6);
      // bpftrace reports "attached" before its programs run: wait for the first kill.
      for (let i = 0; i < 200 && victims(bin, netns, 1)[0]?.sig !== 9; i++) await sleep(50);
    };
    const off = async (m: Mode): Promise<void> => void (await enfs[m].remove(policy));

    const loadBefore = load();
    const floor = victims(bin, netns, Math.max(20, Math.floor(KILLS / 3)));
    const tracer = await kernelTracer();
    await sleep(1000); // bpftrace says READY before its programs run
    const kills: Record<Mode, { ns: number; sig: number }[]> = { guard: [], bpftrace: [] };
    const kernel: Record<Mode, KernelSample[]> = { guard: [], bpftrace: [] };
    for (let r = 0; r < ROUNDS; r++)
      for (const m of r % 2 === 0 ? MODES : [...MODES].reverse()) {
        process.stderr.write(`round ${r + 1}/${ROUNDS}: kills, ${m}\n`);
        await on(m);
        await sleep(200);
        tracer.samples.length = 0;
        kills[m].push(...victims(bin, netns, Math.ceil(KILLS / ROUNDS)));
        await sleep(200);
        kernel[m].push(...tracer.samples);
        await off(m);
      }
    await tracer.stop();
    const killRow = (m: Mode): Record<string, unknown> => {
      const killed = kills[m].filter((k) => k.sig === 9 && k.ns >= 0);
      return {
        samples: kills[m].length,
        killed: killed.length,
        kill: summary(killed.map((k) => k.ns)),
        kernelOpenToExit: { samples: kernel[m].length, ...summary(kernel[m].map((k) => k.exitNs)) },
        kernelOpenToSignalSent: seen(kernel[m].map((k) => k.generateNs)),
        kernelOpenToSignalDelivered: seen(kernel[m].map((k) => k.deliverNs)),
        // The same less the victim's wait for a CPU: what the kill path itself takes.
        kernelOpenToSignalDeliveredOnCpu: seen(
          kernel[m].filter((k) => k.deliverNs > 0).map((k) => Math.max(1, k.deliverNs - k.waitedNs)),
        ),
        waitedForCpu: {
          victims: kernel[m].filter((k) => k.waitedNs > 0).length,
          ...summary(kernel[m].map((k) => k.waitedNs)),
        },
      };
    };
    console.log(
      JSON.stringify({
        bench: "runtime-kill",
        what: "open(/etc/shadow) in a selected endpoint -> death seen by the parent (pidfd)",
        guard: killRow("guard"),
        bpftrace: killRow("bpftrace"),
        floorNoPolicy: { samples: floor.length, ...summary(floor.filter((k) => k.ns >= 0).map((k) => k.ns)) },
        applyMs: { guard: applyMs.guard.map(Math.round), bpftrace: applyMs.bpftrace.map(Math.round) },
        target: "kill within 1 ms of the syscall: kernelOpenToSignalDelivered p99 < 1 ms",
        loadavg: { before: loadBefore, after: load() },
      }),
    );

    const cpu: Record<"off" | Mode, number[]> = { off: [], guard: [], bpftrace: [] };
    const wall: Record<"off" | Mode, number[]> = { off: [], guard: [], bpftrace: [] };
    for (let r = 0; r < ROUNDS; r++)
      for (const k of (["off", "guard", "bpftrace"] as const).map((_, i, a) => a[(i + r) % 3] ?? "off")) {
        process.stderr.write(`round ${r + 1}/${ROUNDS}: open loop, ${k}\n`);
        if (k !== "off") await on(k);
        const o = openLoop(bin, netns);
        if (k !== "off") await off(k);
        cpu[k].push(Math.round(o.cpuNs / OPENS));
        wall[k].push(Math.round(o.wallNs / OPENS));
      }
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
    const ratio = (k: Mode): number => Math.round((med(cpu[k]) / med(cpu.off)) * 1000) / 1000;
    console.log(
      JSON.stringify({
        bench: "runtime-open-overhead",
        what: "open+close of /etc/hostname in the selected endpoint, with and without the kill policy attached",
        opens: OPENS,
        rounds: ROUNDS,
        cpuNsPerOpen: cpu,
        wallNsPerOpen: wall,
        cpuRatio: { guard: ratio("guard"), bpftrace: ratio("bpftrace") },
        loadavg: load(),
      }),
    );

    // The event source's rate with each kill path attached (its sys_enter program runs on every syscall).
    const rate: Record<"off" | Mode, number[]> = { off: [], guard: [], bpftrace: [] };
    const lost: Record<"off" | Mode, number> = { off: 0, guard: 0, bpftrace: 0 };
    let records = 0;
    const src = new NativeSource({ onRecord: () => void records++, onDrop: () => undefined });
    await src.start();
    try {
      for (let r = 0; r < ROUNDS; r++)
        for (const k of (["off", "guard", "bpftrace"] as const).map((_, i, a) => a[(i + r) % 3] ?? "off")) {
          process.stderr.write(`round ${r + 1}/${ROUNDS}: fork storm, ${k}\n`);
          if (k !== "off") await on(k);
          const r0 = records;
          const l0 = src.counts.lost;
          const t0 = process.hrtime.bigint();
          await new Promise<void>((resolve) => spawn(storm, [String(FORKS)]).once("exit", () => resolve()));
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          await sleep(500);
          rate[k].push(Math.round((records - r0) / s));
          lost[k] += src.counts.lost - l0;
          if (k !== "off") await off(k);
        }
    } finally {
      await src.stop();
    }
    console.log(
      JSON.stringify({
        bench: "runtime-kill-rate",
        what: `native event source records/s over a fork storm of ${FORKS} on the host, with a kill policy attached or not`,
        recordsPerS: rate,
        lost,
        loadavg: load(),
      }),
    );

    // Start costs: the event source's start with the BTF offsets cache warm vs off.
    const startMs: Record<"warm" | "off", number[]> = { warm: [], off: [] };
    for (let r = 0; r < ROUNDS; r++)
      for (const k of r % 2 === 0 ? (["warm", "off"] as const) : (["off", "warm"] as const)) {
        const s = new NativeSource({
          onRecord: () => undefined,
          onDrop: () => undefined,
          ...(k === "off" ? { btfCacheDir: "" } : {}),
        });
        const t0 = process.hrtime.bigint();
        await s.start();
        startMs[k].push(Math.round(Number(process.hrtime.bigint() - t0) / 1e6));
        await s.stop();
      }
    console.log(
      JSON.stringify({
        bench: "runtime-start",
        what: "native event source start (BTF offsets, program generation, load, attach), BTF offsets cache warm vs off",
        startMs,
        loadavg: load(),
      }),
    );
  } finally {
    for (const m of MODES) await enfs[m].stop();
    spawnSync("ip", ["netns", "del", netns]);
    rmSync(dir, { recursive: true, force: true });
  }
}

function sleep(msec: number): Promise<void> {
  return new Promise((r) => setTimeout(r, msec));
}

await main();
