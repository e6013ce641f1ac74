/**
 * One bpftrace process running one compiled policy.
 *
 *   script text --temp file (0600)--> setpriv --pdeathsig KILL
 *                                      unshare --mount (private tracefs mount)
 *                                      setpriv --pdeathsig KILL --bounding-set bpf,perfmon,sys_admin
 *                                      bpftrace -f json --unsafe <file>
 *   stdout JSON lines --output.ts--> READY | events | lost counts
 *
 * Why bpftrace (Debian's 0.17, a subprocess) rather than a native binding or
 * bpftool with clang-built objects: it compiles tracepoint programs against
 * this kernel's BTF at load time (no build-time headers, no C toolchain in
 * the product), `signal()` is bpf_send_signal in the program itself (the kill
 * does not wait for user space), and a dead agent takes it down (below).
 * The cost is a compile per load (about a second) and the 512-byte stack
 * limits of its code generator (script.ts keeps within them).
 *
 * Lifetime: the chain is exec'd in one process (no forks), whose parent is
 * the agent; PR_SET_PDEATHSIG=SIGKILL is set twice (before the namespace
 * switch and right before bpftrace) so that when the agent dies, even by
 * SIGKILL, the kernel kills bpftrace and its programs are detached with its
 * file descriptors: no program keeps killing without an agent to report it.
 *
 * Least privilege: bpftrace runs with the capability bounding set reduced to
 * CAP_BPF + CAP_PERFMON + CAP_SYS_ADMIN (root's permitted set after exec is
 * the bounding set). CAP_SYS_ADMIN is needed by bpftrace 0.17 itself: without
 * it, it cannot use the kernel's BTF and fails on `s64`/`umode_t` while
 * compiling (checked on 6.18). Everything else is dropped (CAP_NET_ADMIN,
 * CAP_KILL, CAP_DAC_OVERRIDE, CAP_SYS_PTRACE, CAP_SETUID...): the kills come
 * from the BPF programs, not from bpftrace. tracefs is mounted only inside its
 * own mount namespace when the host has not mounted it (this host does not).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { MembraneError } from "../../errors.js";
import { SCRIPT_STRLEN } from "./script.js";
import { parseLine } from "./output.js";

export interface BpftraceOptions {
  readonly script: string;
  /** Printed in errors: which policy this is. */
  readonly what: string;
  onEvent(fields: readonly string[]): void;
  onLost(count: number): void;
  /** The process ended after it was ready (not through stop()). */
  onExit(reason: string): void;
  /** Safety net only: a load that neither becomes ready nor fails by then is killed. */
  readonly loadTimeoutMs?: number;
  readonly bpftrace?: string;
  /** The probes the script declares (script.ts): fewer attached is a load failure, not a partial policy. */
  readonly expectProbes?: number;
  /** The script's uprobes, named in that failure (the usual cause: a symbol its file does not have). */
  readonly uprobes?: readonly string[];
}

const SHELL =
  '[ -d /sys/kernel/tracing/events ] || mount -t tracefs tracefs /sys/kernel/tracing || exit 97; exec setpriv --pdeathsig KILL --bounding-set -all,+bpf,+perfmon,+sys_admin -- "$1" -f json --unsafe "$2"';

export class BpftraceProcess {
  private stopping = false;
  private exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts the program; resolves once every probe is attached (READY), rejects with RUNTIME_ENFORCER_FAILED. */
  static async start(o: BpftraceOptions): Promise<BpftraceProcess> {
    const dir = await mkdtemp(join(tmpdir(), "membrane-bt-"));
    const file = join(dir, "policy.bt");
    await writeFile(file, o.script, { mode: 0o600 });
    const child = spawn(
      "setpriv",
      [
        "--pdeathsig",
        "KILL",
        "--",
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        SHELL,
        "membrane-bpftrace",
        o.bpftrace ?? "bpftrace",
        file,
      ],
      {
        stdio: ["ignore", "pipe", "pipe"],
        env: {
          PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
          BPFTRACE_STRLEN: String(SCRIPT_STRLEN),
          BPFTRACE_MAP_KEYS_MAX: "65536",
        },
      },
    );
    const p = new BpftraceProcess(child);
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-4096);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let ready = false;
        let attached: number | undefined;
        const timer = setTimeout(() => {
          child.kill("SIGKILL");
          reject(
            new MembraneError(
              "RUNTIME_ENFORCER_FAILED",
              `Cannot load ${o.what}: bpftrace did not attach within ${o.loadTimeoutMs ?? 60_000} ms`,
            ),
          );
        }, o.loadTimeoutMs ?? 60_000);
        const rl = createInterface({ input: child.stdout!, crlfDelay: Infinity });
        rl.on("line", (line) => {
          const l = parseLine(line);
          if (l.kind === "attached") attached = l.count;
          else if (l.kind === "ready" && !ready && short(attached, o.expectProbes)) {
            clearTimeout(timer);
            child.kill("SIGKILL");
            reject(
              new MembraneError(
                "RUNTIME_ENFORCER_FAILED",
                `Cannot load ${o.what}: bpftrace attached ${String(attached)} of its ${String(o.expectProbes)} probes${o.uprobes?.length ? `; a uprobe's function is not in its file (bpftrace skips it without an error): check ${o.uprobes.join(", ")}` : ""}`,
                {
                  hint: "nothing of this policy stays attached; list a file's functions with: nm -D --defined-only FILE (or nm FILE)",
                },
              ),
            );
          } else if (l.kind === "ready" && !ready) {
            ready = true;
            clearTimeout(timer);
            resolve();
          } else if (l.kind === "event") o.onEvent(l.fields);
          else if (l.kind === "lost") o.onLost(l.count);
        });
        child.once("error", (e) => {
          clearTimeout(timer);
          reject(
            new MembraneError(
              "RUNTIME_ENFORCER_FAILED",
              `Cannot load ${o.what}: cannot run bpftrace: ${e.message}`,
              { cause: e, hint: "install bpftrace (scripts/install-system-deps.sh)" },
            ),
          );
        });
        child.once("exit", (code, signal) => {
          clearTimeout(timer);
          const why = `bpftrace exited (${signal ?? `code ${String(code)}`})${stderr ? `: ${summarise(stderr)}` : ""}`;
          if (!ready)
            reject(
              new MembraneError("RUNTIME_ENFORCER_FAILED", `Cannot load ${o.what}: ${why}`, {
                hint: "nothing of this policy stays attached: bpftrace attaches all probes or none",
              }),
            );
          else if (!p.stopping) o.onExit(why);
        });
      });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    return p;
  }

  /** Detaches the programs (bpftrace exits); SIGKILL after a safety net. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill("SIGTERM");
    const t = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}

/** Whether bpftrace said it attached fewer probes than the script declares (unknown counts pass). */
function short(attached: number | undefined, expected: number | undefined): boolean {
  return attached !== undefined && expected !== undefined && attached < expected;
}

/** The error lines of bpftrace's stderr, without its RLIMIT_MEMLOCK notice. */
function summarise(stderr: string): string {
  return stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.includes("RLIMIT_MEMLOCK"))
    .slice(0, 6)
    .join(" | ")
    .slice(0, 1000);
}
