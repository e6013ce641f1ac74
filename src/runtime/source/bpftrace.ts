/**
 * The fallback process event source (./select.ts tries ./native.ts first):
 * bpftrace as a child process running
 * source/script.ts, its JSON lines parsed (lines.ts) and joined (assemble.ts).
 *
 *   unshare -m (private tracefs mount) -> setpriv (bounding set: bpf, perfmon,
 *   sys_admin, sys_resource; no new privileges) -> bpftrace -f json
 *        --stdout lines--> parseLine --> Assembler --> onRecord(exec | fork | exit)
 *                              lost / malformed / rate-limited --> onDrop(reason, n)
 *
 * Why bpftrace: tracepoint programs are all this kernel allows (no kprobes,
 * fentry or LSM), bpftrace is a Debian package (no compiler at build time, no
 * native binding to maintain) and reads kernel structs through BTF. Privilege:
 * only the child holds BPF rights, and only those (CAP_SYS_ADMIN stays because
 * bpftrace 0.17 cannot read BTF without it); tracefs is mounted in the child's
 * own mount namespace, never on the host. Features are detected by trying:
 * start() resolves once bpftrace says its probes are attached, and rejects
 * with bpftrace's own error otherwise; and once attached, it waits until an
 * exec of its own has been seen (./canary.ts: "attached" comes before the
 * programs run), or says in `canarySeen` that it never was. If the agent dies, the child's next
 * write hits a closed pipe and it exits (no program outlives its reader long).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { MembraneError } from "../../errors.js";
import { Assembler, type ProcessRecord } from "./assemble.js";
import { Canary } from "./canary.js";
import type { ProcessSource, ProcessSourceParams } from "./source.js";
import { Reorder } from "./reorder.js";
import { MAX_LINE, parseLine } from "./lines.js";
import { processScript, STRLEN } from "./script.js";

export type { DropReason } from "./source.js";

export interface BpftraceSourceParams extends ProcessSourceParams {
  /** Safety net for bpftrace's compile and attach (ms). */
  readonly startTimeoutMs?: number;
  readonly bpftrace?: string;
}

const CAPS = "-all,+bpf,+perfmon,+sys_admin,+sys_resource";
const LAUNCH =
  "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing || exit 97; " +
  `exec setpriv --bounding-set=${CAPS} --inh-caps=-all --no-new-privs -- "$1" -B line -f json -e "$0"`;

export class BpftraceSource implements ProcessSource {
  readonly kind = "bpftrace";
  private child: ChildProcess | undefined;
  private readonly assembler: Assembler;
  private readonly reorder: Reorder;
  private windowStart = 0;
  private windowCount = 0;
  private stopping = false;
  private readonly canary: Canary | undefined;
  /** Lines read, by what they were. */
  readonly counts = { lines: 0, malformed: 0, lost: 0, rateLimited: 0 };

  constructor(private readonly p: BpftraceSourceParams) {
    this.canary = p.canary === false ? undefined : new Canary(p.canary ?? {});
    this.reorder = new Reorder((r) => this.record(r));
    this.assembler = new Assembler((r) => this.reorder.push(r));
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Whether the start's canary exec was seen (the programs run); true without a canary. */
  get canarySeen(): boolean {
    return this.canary?.seen ?? true;
  }

  private record(r: ProcessRecord): void {
    if (this.canary?.filter(r)) return;
    const max = this.p.maxEventsPerSecond ?? 0;
    if (max > 0) {
      const now = Date.now();
      if (now - this.windowStart >= 1000) {
        this.windowStart = now;
        this.windowCount = 0;
      }
      if (++this.windowCount > max) {
        this.counts.rateLimited++;
        this.p.onDrop("rate_limit", 1);
        return;
      }
    }
    this.p.onRecord(r);
  }

  /** One line of bpftrace's output (exposed for the hostile-input tests). */
  line(text: string): "attached" | undefined {
    this.counts.lines++;
    const before = this.assembler.orphans;
    const l = parseLine(text);
    switch (l.kind) {
      case "malformed":
        this.counts.malformed++;
        this.p.onDrop("malformed", 1);
        return undefined;
      case "lost":
        this.counts.lost += l.n;
        this.p.onDrop("lost", l.n);
        return undefined;
      case "attached":
        return "attached";
      case "ignored":
        return undefined;
      default:
        this.assembler.push(l);
        if (this.assembler.orphans > before) this.p.onDrop("orphan", this.assembler.orphans - before);
        return undefined;
    }
  }

  async start(): Promise<void> {
    const child = spawn(
      "unshare",
      [
        "-m",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        LAUNCH,
        processScript(),
        this.p.bpftrace ?? "bpftrace",
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
          BPFTRACE_MAX_STRLEN: String(STRLEN),
        },
      },
    );
    this.child = child;
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => {
      stderr = (stderr + s).slice(-4096);
    });
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        fail(`bpftrace did not attach its probes within ${this.p.startTimeoutMs ?? 120_000} ms`);
      }, this.p.startTimeoutMs ?? 120_000);
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (!ready) {
          reject(
            new MembraneError("RUNTIME_SOURCE_FAILED", `Cannot start the process event source: ${why}`, {
              hint: "runtime events need root, bpftrace (scripts/install-system-deps.sh) and tracepoints (sched:*, syscalls:*)",
            }),
          );
          child.kill("SIGKILL");
        }
      };
      let buf = "";
      let skipping = false;
      child.stdout?.setEncoding("utf8");
      child.stdout?.on("data", (s: string) => {
        buf += s;
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const text = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (skipping) {
            skipping = false; // the tail of a line that was too long
            continue;
          }
          if (this.line(text) === "attached" && !ready) {
            ready = true;
            clearTimeout(timer);
            resolve();
          }
        }
        if (buf.length > MAX_LINE) {
          // A line too long to be ours: dropped, counted, the rest of it skipped.
          buf = "";
          skipping = true;
          this.counts.malformed++;
          this.p.onDrop("malformed", 1);
        }
      });
      child.on("error", (e) => fail(e.message));
      child.on("exit", (code, signal) => {
        const why = `bpftrace exited (${signal ?? `code ${code}`}): ${stderr.replace(/ERROR: Unknown error -1: couldn't set RLIMIT_MEMLOCK[^\n]*\n?/, "").trim()}`;
        this.child = undefined;
        if (!ready) fail(why);
        else if (!this.stopping) this.p.onExit?.(why);
      });
    });
    if (this.canary && !(await this.canary.wait(() => this.stopping || this.child === undefined))) {
      if (this.child === undefined && !this.stopping)
        throw new MembraneError(
          "RUNTIME_SOURCE_FAILED",
          "Cannot start the process event source: bpftrace exited before its programs ran",
        );
      if (!this.stopping) this.p.onCanaryUnseen?.(this.canary.spawned);
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (!c || c.exitCode !== null) return this.reorder.stop();
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGTERM");
      setTimeout(() => c.kill("SIGKILL"), 5000).unref();
    });
    this.reorder.stop();
  }
}
