/**
 * The process of a native BPF loader (membrane-syscall-guard, membrane-connect-guard), one for
 * both: started under setpriv with only `caps`, fed its programs on stdin, read line by line:
 *
 *   stdin:  <input> (the loader attaches once it has read "go"; stdin's end = detach and exit)
 *   stdout: ready | error <text> | lost <total> | event <fields>   (event lines go to onEventLine)
 *           or, with `records`, the same as binary frames (guard-frames.ts; records go to records.on)
 *
 * start() resolves at "ready" and rejects (the loader killed) on an early exit, a spawn error or
 * the safety-net timeout; after "ready" an exit not asked for is onExit. The loader dies with the
 * agent (--pdeathsig KILL), so no program acts without an agent to report it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import type { MembraneError } from "../../errors.js";
import { GuardFrameReader } from "./guard-frames.js";

export interface GuardLoaderOptions {
  readonly bin: string;
  /** setpriv's --bounding-set, e.g. "-all,+bpf,+perfmon". */
  readonly caps: string;
  /** Everything the loader reads before it attaches, ending with "go\n". */
  readonly input: string;
  /** "the syscall guard": in messages. */
  readonly name: string;
  /** The error of a failed load (the caller's code and hint). */
  readonly failed: (why: string, cause?: unknown) => MembraneError;
  onEventLine(payload: string): void;
  /** The loader writes binary frames of fixed-size records (membrane-syscall-guard) instead of lines. */
  readonly records?: { readonly size: number; on(record: Buffer): void };
  onLost(count: number): void;
  onExit(reason: string): void;
  readonly loadTimeoutMs?: number;
}

export class GuardLoader {
  private stopping = false;
  private readonly exited: Promise<void>;

  private constructor(private readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => child.once("exit", () => resolve()));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  static async start(o: GuardLoaderOptions): Promise<GuardLoader> {
    const child = spawn(
      "setpriv",
      ["--pdeathsig", "KILL", "--bounding-set", o.caps, "--inh-caps=-all", "--no-new-privs", "--", o.bin],
      {
        stdio: ["pipe", "pipe", "pipe"],
        env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    );
    const g = new GuardLoader(child);
    let lostSeen = 0;
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      let error = "";
      const limit = o.loadTimeoutMs ?? 30_000;
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(o.failed(`${o.name} did not attach within ${limit} ms`));
      }, limit);
      const markReady = (): void => {
        if (ready) return;
        ready = true;
        clearTimeout(timer);
        resolve();
      };
      const lost = (total: number): void => {
        if (total > lostSeen) o.onLost(total - lostSeen);
        lostSeen = Math.max(lostSeen, total);
      };
      const rec = o.records;
      if (rec) {
        const frames = new GuardFrameReader(rec.size);
        child.stdout!.on("data", (chunk: Buffer) => {
          for (const f of frames.push(chunk)) {
            if (f.kind === "ready") markReady();
            else if (f.kind === "error") error = f.text;
            else if (f.kind === "lost") lost(f.total);
            else if (f.kind === "records")
              for (let i = 0; i < f.count; i++) rec.on(f.records.subarray(i * rec.size, (i + 1) * rec.size));
            else {
              // Our own loader lost its framing: nothing it says can be trusted any more; it is stopped
              // (its programs detach) and the exit is reported.
              error = `unreadable output: ${f.why}`;
              child.kill("SIGKILL");
            }
          }
        });
      } else
        createInterface({ input: child.stdout!, crlfDelay: Infinity }).on("line", (line) => {
          if (line === "ready") markReady();
          else if (line.startsWith("error ")) error = line.slice(6, 1006);
          else if (line.startsWith("event ")) o.onEventLine(line.slice(6));
          else if (/^lost \d{1,20}$/.test(line)) lost(Number(line.slice(5)));
        });
      child.stderr?.resume();
      child.stdin?.on("error", () => undefined);
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(o.failed(`cannot run ${o.bin}: ${e.message}`, e));
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        const why = `${o.name} exited (${signal ?? `code ${String(code)}`})${error ? `: ${error}` : ""}`;
        if (!ready) reject(o.failed(why));
        else if (!g.stopping) o.onExit(why);
      });
      // stdin stays open: its end is the loader's signal to detach and exit.
      child.stdin?.write(o.input);
    });
    return g;
  }

  /** Detaches (the loader exits when its stdin closes); SIGKILL after a safety net. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.stdin?.end();
    const t = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}
