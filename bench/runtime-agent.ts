/**
 * What the runtime benches share (runtime-rate.ts, runtime-overhead.ts): the agent's own runtime
 * pipeline, wired as src/agent/agent.ts wires it (TracingPoliciesController + startRuntime: syscall
 * guard -> decode -> enrich from the process cache -> Tetragon JSON lines file, metrics, ring), one
 * endpoint namespace named with the bench's prefix, the workloads of bench/native/rt-loops.c, and
 * CPU readings of the helper processes. Everything made here carries the `m4r` prefix and is removed
 * by `close()`.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { Registry } from "prom-client";
import type { EndpointView } from "../src/agent/controllers/endpoint-record.js";
import type { RuntimeController } from "../src/agent/controllers/runtime.js";
import { startRuntime } from "../src/agent/controllers/runtime-bridge.js";
import { TracingPoliciesController } from "../src/agent/controllers/tracing-policies.js";
import { endpointCgroupPath } from "../src/datapath/endpoint-cgroup.js";

const LOOPS_SRC = fileURLToPath(new URL("../../bench/native/rt-loops.c", import.meta.url));

export const load = (): number[] => loadavg().map((x) => Math.round(x * 100) / 100);
export const r3 = (x: number): number => Math.round(x * 1000) / 1000;
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length === 0 ? NaN : s.length % 2 ? (s[m] ?? NaN) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
};

/** utime + stime of a process, in seconds (/proc/<pid>/stat; USER_HZ 100); 0 when it is gone. */
export function procCpuS(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Our child processes whose comm starts with `comm` (the loaders run under setpriv, which execs them). */
export function childrenNamed(comm: string): number[] {
  const out: number[] = [];
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    let kids = "";
    try {
      kids = readFileSync(`/proc/${process.pid}/task/${tid}/children`, "utf8");
    } catch {
      continue;
    }
    for (const k of kids.trim().split(/\s+/).filter(Boolean)) {
      try {
        if (readFileSync(`/proc/${k}/comm`, "utf8").trim().startsWith(comm.slice(0, 15))) out.push(Number(k));
      } catch {
        // gone meanwhile
      }
    }
  }
  return out;
}

/** Runs a command to its end without blocking the event loop (the pipeline keeps reading meanwhile). */
export function runAsync(argv: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(argv[0] ?? "", argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    c.once("error", reject);
    c.once("close", (code) =>
      code === 0 ? resolve(out) : reject(new Error(`${argv.join(" ")}: exit ${String(code)} ${err}`)),
    );
  });
}

/** The agent's runtime pipeline around one endpoint namespace (labels app=<app>). */
export class RuntimeLab {
  readonly dir: string;
  readonly loops: string;
  readonly netns: string;
  readonly exportPath: string;
  /** The metrics of the pipeline started last (a new registry per start: names register once). */
  registry = new Registry();
  tracing: TracingPoliciesController | undefined;
  runtime: RuntimeController | undefined;
  private readonly view: EndpointView;
  private log: ReturnType<typeof pino.destination> | undefined;

  constructor(tag: string, app: string) {
    this.dir = mkdtempSync(join(tmpdir(), `m4r-${tag}-`));
    this.loops = join(this.dir, "rt-loops");
    this.exportPath = join(this.dir, "tetragon.jsonl");
    this.netns = `m4r${tag}${randomBytes(3).toString("hex")}`;
    const cc = spawnSync("gcc", ["-O2", "-Wall", "-o", this.loops, LOOPS_SRC], { encoding: "utf8" });
    if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
    const ip = spawnSync("ip", ["netns", "add", this.netns], { encoding: "utf8" });
    if (ip.status !== 0) throw new Error(`ip netns add ${this.netns}: ${ip.stderr}`);
    this.view = {
      name: this.netns,
      namespace: "bench",
      id: 1,
      identity: 256,
      labels: { app },
      ipv4: "10.255.0.2",
      netns: this.netns,
      hostIfname: "none",
      ingress: { enforced: false, entries: 0 },
      egress: { enforced: false, entries: 0 },
      policyRevision: 0,
    };
  }

  /** `rt-loops ...` inside the endpoint's namespace; its output line, split on spaces, as numbers. */
  async inEndpoint(args: readonly string[]): Promise<number[]> {
    const out = await runAsync(["ip", "netns", "exec", this.netns, this.loops, ...args]);
    return out.trim().split(" ").map(Number);
  }

  /**
   * Starts the pipeline as `membrane agent --runtime-events --runtime-export-file` does (the native
   * process event source, the agent's log at info into a file of the temp dir), and applies `policy`.
   */
  async start(policy: string | undefined, events = true): Promise<void> {
    this.registry = new Registry();
    this.log = pino.destination({ dest: join(this.dir, "agent.log"), sync: true });
    const logger = pino({ level: "info", base: { component: "agent" } }, this.log);
    const endpoints = (): EndpointView[] => [this.view];
    this.tracing = new TracingPoliciesController({ logger, endpoints });
    const params = { nodeName: "bench-node", source: "native" as const, exportPath: this.exportPath };
    if (events)
      this.runtime = await startRuntime(params, { logger, endpoints, registry: this.registry }, this.tracing);
    if (policy !== undefined) await this.tracing.apply(policy, "bench.yaml");
  }

  async stop(): Promise<void> {
    await this.tracing?.stop();
    await this.runtime?.stop();
    this.tracing = undefined;
    this.runtime = undefined;
    this.log?.end();
    this.log = undefined;
  }

  /** Stops the pipeline, deletes the namespace, its cgroup (made by the tracing controller) and the temp dir. */
  async close(): Promise<void> {
    try {
      await this.stop();
    } finally {
      spawnSync("ip", ["netns", "del", this.netns]);
      const cg = endpointCgroupPath(this.netns);
      if (cg !== undefined) {
        try {
          rmdirSync(cg);
        } catch {
          // never made (no policy applied) or already gone
        }
      }
      rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
