/**
 * The fanotify responder of one TracingPolicy: native/membrane-fanotify.c
 * (built into dist/bin/membrane-fanotify) run as a child of the agent.
 *
 *   config text (config.ts) --stdin--> setpriv --pdeathsig KILL --no-new-privs
 *                                       --bounding-set sys_admin,sys_ptrace,dac_read_search
 *                                       membrane-fanotify
 *   stdout JSON lines --> {"ready":..} | {"error":..} | one report per denial --> RuntimePolicyEvent
 *
 * Capabilities: CAP_SYS_ADMIN for fanotify_init(FAN_CLASS_CONTENT) and mount
 * marks; CAP_DAC_READ_SEARCH to mark (and have the kernel open for it) files
 * root does not own; CAP_SYS_PTRACE to read /proc/<pid>/exe and ns of other
 * users' processes. Nothing else (no CAP_KILL, CAP_NET_ADMIN...).
 *
 * Lifetime: stdin stays open; closing it (stop) or the agent's death
 * (PR_SET_PDEATHSIG, set by setpriv and again by the responder) ends it, and
 * the kernel then allows every pending access and drops the marks.
 */
import { jsonObjectLine } from "../json-line.js";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import type { RuntimePolicyEvent } from "../enforce/events.js";
import type { ResponderRule } from "./config.js";

/** Longest report line read (two paths of PATH_MAX, each byte at most 5 characters, and the rest). */
export const MAX_REPORT_LINE = 48 * 1024;

export interface FileReport {
  readonly rule: number;
  readonly pid: number;
  readonly uid: number;
  readonly netns: number;
  readonly ktime: bigint;
  readonly mask: "open" | "access";
  readonly path: string | undefined;
  readonly binary: string | undefined;
  /** A condition could not be read and the access was denied anyway (fail closed for selected endpoints). */
  readonly unverified: boolean;
  /** Reports the responder dropped (queue full) and events it could not attribute, so far. */
  readonly lost: number;
  readonly errors: number;
}

export type ResponderLine =
  | { readonly kind: "ready" }
  | { readonly kind: "error"; readonly message: string }
  | { readonly kind: "report"; readonly report: FileReport }
  | { readonly kind: "other" };

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const str = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined);

/** One line of the responder's output; anything malformed or oversized is "other". */
export function parseResponderLine(line: string): ResponderLine {
  const r = jsonObjectLine(line, MAX_REPORT_LINE);
  if (typeof r === "string") return { kind: "other" };
  if (r["ready"] === true) return { kind: "ready" };
  if (typeof r["error"] === "string") return { kind: "error", message: r["error"].slice(0, 600) };
  const rule = num(r["rule"]);
  const pid = num(r["pid"]);
  const netns = num(r["netns"]);
  if (rule === undefined || pid === undefined || netns === undefined) return { kind: "other" };
  const kt = num(r["ktime"]);
  return {
    kind: "report",
    report: {
      rule,
      pid,
      uid: num(r["uid"]) ?? -1,
      netns,
      ktime: kt !== undefined && kt >= 0 ? BigInt(Math.trunc(kt)) : 0n,
      mask: r["mask"] === "access" ? "access" : "open",
      path: str(r["path"]),
      binary: str(r["binary"]),
      unverified: r["unverified"] === true,
      lost: num(r["lost"]) ?? 0,
      errors: num(r["errors"]) ?? 0,
    },
  };
}

/** The event of a report: Tetragon's process_kprobe of the hook as the policy wrote it, action Override. */
export function reportToEvent(
  r: FileReport,
  c: { policyName: string; policyNamespace: string | undefined; rules: readonly ResponderRule[]; now: Date },
): RuntimePolicyEvent | undefined {
  const rule = c.rules[r.rule];
  if (!rule || rule.verdict !== "deny") return undefined;
  const binary = r.binary ?? "";
  return {
    type: "process_kprobe",
    policyName: c.policyName,
    policyNamespace: c.policyNamespace,
    functionName: rule.probe.functionName,
    action: "KPROBE_ACTION_OVERRIDE",
    signal: undefined,
    pid: r.pid,
    tid: r.pid,
    uid: r.uid,
    comm: binary.slice(binary.lastIndexOf("/") + 1).slice(0, 15),
    netnsInode: r.netns,
    cgroupId: "0",
    args: rule.probe.args.map((a) => ({
      index: a.index,
      type: a.type,
      label: a.label,
      value: a.index === rule.pathArg ? r.path : undefined,
    })),
    message: rule.probe.message,
    tags: rule.probe.tags,
    ktimeNs: r.ktime,
    time: c.now,
  };
}

/** dist/bin/membrane-fanotify, built beside this file (dist/src/runtime/file/responder.js). */
export function defaultResponderPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "bin", "membrane-fanotify");
}

export interface ResponderOptions {
  readonly config: string;
  /** Printed in errors: which policy this is. */
  readonly what: string;
  onReport(r: FileReport): void;
  /** The responder ended after it was ready (not through stop()): nothing is denied any more. */
  onExit(reason: string): void;
  readonly binary?: string;
  /** Safety net only. */
  readonly loadTimeoutMs?: number;
}

export class FileResponder {
  private stopping = false;
  private readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolves once every mark is placed; rejects with RUNTIME_ENFORCER_FAILED (then nothing stays marked). */
  static async start(o: ResponderOptions): Promise<FileResponder> {
    const bin = o.binary ?? defaultResponderPath();
    const fail = (why: string, hint?: string): MembraneError =>
      new MembraneError("RUNTIME_ENFORCER_FAILED", `Cannot load ${o.what}: ${why}`, hint ? { hint } : {});
    if (!existsSync(bin))
      throw fail(`the fanotify responder ${bin} is missing`, "build it: npm run build (needs gcc)");
    const child = spawn(
      "setpriv",
      [
        "--pdeathsig",
        "KILL",
        "--no-new-privs",
        "--bounding-set",
        "-all,+sys_admin,+sys_ptrace,+dac_read_search",
        "--",
        bin,
      ],
      { stdio: ["pipe", "pipe", "pipe"], cwd: "/", env: {} },
    );
    const p = new FileResponder(child);
    let stderr = "";
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr = (stderr + d).slice(-2048);
    });
    child.stdin?.on("error", () => undefined); // EPIPE when it exits first: reported through "exit"
    child.stdin?.write(o.config);
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      let error = "";
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(fail(`the fanotify responder did not report ready within ${o.loadTimeoutMs ?? 30_000} ms`));
      }, o.loadTimeoutMs ?? 30_000);
      const rl = createInterface({ input: child.stdout!, crlfDelay: Infinity });
      rl.on("line", (line) => {
        const l = parseResponderLine(line);
        if (l.kind === "ready" && !ready) {
          ready = true;
          clearTimeout(timer);
          resolve();
        } else if (l.kind === "error") error = l.message;
        else if (l.kind === "report") o.onReport(l.report);
      });
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(fail(`cannot run the fanotify responder: ${e.message}`));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const why = `the fanotify responder exited (${signal ?? `code ${String(code)}`})${error || stderr ? `: ${(error || stderr).trim().slice(0, 600)}` : ""}`;
        if (!ready) reject(fail(why, "nothing of this policy stays marked: marks vanish with the responder"));
        else if (!p.stopping) o.onExit(why);
      });
    });
    return p;
  }

  /** Ends the responder (stdin closed); the kernel removes its marks. SIGKILL after a safety net. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 5_000);
    await this.exited;
    clearTimeout(t);
  }
}
