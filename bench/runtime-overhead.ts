/**
 * What runtime security costs the workload (issue 15 item 7: "< 5% overhead on the exec loop"):
 * an exec loop (vfork + exec /bin/true) and an open loop (open + close /etc/hostname), run in an
 * endpoint's namespace, with and without the agent's runtime pipeline (bench/runtime-agent.ts).
 *
 *   off:    nothing attached.
 *   events: `--runtime-events` (the native process event source: exec/fork/exit programs, export).
 *   policy: the same plus a TracingPolicy selecting the endpoint (openat of /etc/shadow -> Sigkill):
 *           the syscall guard's sys_enter program runs on every syscall of the machine, its full path
 *           (scope, path read, compare) on every openat of the endpoint (the loader's own opens too).
 *
 * Rounds: each on-mode is measured next to its own "off" (the order alternates), the figure is the
 * median over rounds of the pair ratios of CPU time per operation (user + system of the loop and its
 * children: the BPF programs run in the task's own context), which load shifts far less than wall
 * time. Plus the agent's CPU per process event (its cost, not the workload's).
 *
 * One JSON line (`bench: "runtime-overhead"`) with the load average. Needs root and gcc.
 *   node dist/bench/runtime-overhead.js [--rounds=7] [--execs=1000] [--opens=200000] [--quick]
 */
import { shadowKillPolicy } from "../src/cli/demo-runtime.js";
import { benchArgs, flag, int } from "./cli.js";
import { childrenNamed, load, median, procCpuS, r3, RuntimeLab, sleep } from "./runtime-agent.js";

const { flags } = benchArgs({
  script: "runtime-overhead",
  runner: "runtime-overhead",
  measures: "What runtime security costs the workload: an exec loop and an open loop in an endpoint, off vs runtime events vs events + a kill policy, each on-mode next to its own off in alternating order; figure = median of the pair ratios of CPU per operation, plus the agent's CPU per event. One JSON line with the load average.", // prettier-ignore
  root: "BPF programs and an endpoint's namespace; needs gcc",
  flags: {
    rounds: int({
      help: "rounds (pairs per on-mode and loop)",
      min: 1,
      max: 100,
      shown: "7; 3 with --quick",
    }),
    execs: int({
      help: "execs per exec-loop window",
      min: 1,
      max: 1_000_000,
      shown: "1000; 300 with --quick",
    }),
    opens: int({ help: "opens per open-loop window", min: 1, max: 100_000_000, shown: "200000; 50000 with --quick" }), // prettier-ignore
    quick: flag("the smaller sizes (a smoke run)"),
  },
});
const quick = flags.quick;
const ROUNDS = flags.rounds ?? (quick ? 3 : 7);
const EXECS = flags.execs ?? (quick ? 300 : 1000);
const OPENS = flags.opens ?? (quick ? 50_000 : 200_000);

const POLICY = shadowKillPolicy("bench-no-shadow", "app: loop");

type Mode = "off" | "events" | "policy";
type Loop = "exec" | "open";
const ON: readonly Exclude<Mode, "off">[] = ["events", "policy"];

interface Measured {
  readonly cpuNs: number;
  readonly wallNs: number;
  /** The agent's CPU (this process and the event loader) per process event; NaN when off. */
  readonly agentUsPerEvent: number;
  /** Of which the event loader's (membrane-exec-events). */
  readonly loaderUsPerEvent: number;
}

async function measure(lab: RuntimeLab, mode: Mode, loop: Loop): Promise<Measured> {
  if (mode !== "off") await lab.start(mode === "policy" ? POLICY : undefined);
  try {
    const loader = childrenNamed("membrane-exec-events")[0];
    const c0 = process.cpuUsage();
    const l0 = procCpuS(loader);
    const w0 = lab.runtime?.ring.written ?? 0;
    const [wallNs = 0, cpuNs = 0] =
      loop === "exec"
        ? await lab.inEndpoint(["exec", String(EXECS), "/bin/true"])
        : await lab.inEndpoint(["open", String(OPENS), "/etc/hostname"]);
    if (mode !== "off") await sleep(300); // the loader's last batch (it coalesces 10 ms)
    const c = process.cpuUsage(c0);
    const events = (lab.runtime?.ring.written ?? 0) - w0;
    const loaderS = procCpuS(loader) - l0;
    const agentS = (c.user + c.system) / 1e6 + loaderS;
    const n = loop === "exec" ? EXECS : OPENS;
    return {
      cpuNs: cpuNs / n,
      wallNs: wallNs / n,
      agentUsPerEvent: (agentS / events) * 1e6,
      loaderUsPerEvent: (loaderS / events) * 1e6,
    };
  } finally {
    await lab.stop();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.log(JSON.stringify({ bench: "runtime-overhead", skipped: "needs root" }));
    return;
  }
  const lab = new RuntimeLab("ovh", "loop");
  const out: Record<string, unknown> = {};
  try {
    for (const loop of ["exec", "open"] as const) {
      const cpu: Record<Mode, number[]> = { off: [], events: [], policy: [] };
      const wall: Record<Mode, number[]> = { off: [], events: [], policy: [] };
      const ratios: Record<Exclude<Mode, "off">, number[]> = { events: [], policy: [] };
      const agentUs: number[] = [];
      const loaderUs: number[] = [];
      for (let r = 0; r < ROUNDS; r++)
        for (const m of ON) {
          process.stderr.write(`round ${r + 1}/${ROUNDS}: ${loop} loop, off vs ${m}\n`);
          const pair: Partial<Record<Mode, number>> = {};
          for (const k of r % 2 === 0 ? (["off", m] as const) : ([m, "off"] as const)) {
            const x = await measure(lab, k, loop);
            cpu[k].push(Math.round(x.cpuNs));
            wall[k].push(Math.round(x.wallNs));
            pair[k] = x.cpuNs;
            if (k === "events" && loop === "exec") {
              agentUs.push(x.agentUsPerEvent);
              loaderUs.push(x.loaderUsPerEvent);
            }
          }
          ratios[m].push((pair[m] ?? NaN) / (pair.off ?? NaN));
        }
      out[loop] = {
        ops: loop === "exec" ? EXECS : OPENS,
        cpuNsPerOp: cpu,
        wallNsPerOp: wall,
        pairRatios: { events: ratios.events.map(r3), policy: ratios.policy.map(r3) },
        overheadPct: {
          events: r3((median(ratios.events) - 1) * 100),
          policy: r3((median(ratios.policy) - 1) * 100),
        },
        ...(loop === "exec"
          ? {
              agentCpuUsPerProcessEvent: r3(median(agentUs)),
              loaderCpuUsPerProcessEvent: r3(median(loaderUs)),
            }
          : {}),
      };
    }
    console.log(
      JSON.stringify({
        bench: "runtime-overhead",
        what: "CPU per operation of an exec loop and an open loop in an endpoint: off vs runtime events vs events + a kill policy",
        rounds: ROUNDS,
        ...out,
        target: "exec loop overheadPct.policy < 5 (median of pair ratios)",
        loadavg: load(),
      }),
    );
  } finally {
    await lab.close();
  }
}

await main();
