/**
 * The native process event source: raw tracepoint programs of our own
 * (./native-prog.ts, at the running kernel's BTF offsets) loaded by a small C
 * loader (native/membrane-exec-events.c, built by `npm run build`) that
 * forwards their ring-buffer records in binary frames (./native-record.ts).
 *
 *   withBtf (cached offsets, or the kernel BTF) -> layoutFrom -> nativePrograms --hex on stdin--> membrane-exec-events
 *        stdout frames --FrameReader--> onRecord(exec | fork | exit), in the ring buffer's order
 *                        LOST (ring full) / malformed --> onDrop(reason, n)
 *                        MARK (asked for on stdin: requestMark) --> onMark(ktime)
 *
 * No reordering (bpftrace's source needs ./reorder.ts, one perf buffer per
 * CPU): the BPF ring buffer is one for every CPU and hands records out in the
 * order they were reserved, and a process's fork is reserved before it runs,
 * its exec before its later events, its exit after them. Records reach the
 * cache as soon as the loader reads them (it did hold every record 50 ms,
 * which made policy events of new processes wait or go without exec_id).
 *
 * Why: the bpftrace source prints text that is parsed as JSON (700-868 us of
 * CPU per exec, far from 50,000 events/s); here the kernel writes fixed-size
 * records and the agent reads them without parsing text.
 *
 * Privilege: the loader runs under setpriv with the bounding set reduced to
 * CAP_BPF and CAP_PERFMON, no new privileges, and dies with the agent
 * (PR_SET_PDEATHSIG) or when its stdin closes; its programs go with it
 * (nothing pinned). Detection is by loading: start() rejects with the
 * verifier's or the kernel's reason when the programs cannot load or attach,
 * and the caller falls back to bpftrace (./select.ts). The programs are
 * attached when READY comes, so no canary is needed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../../errors.js";
import type { ProcessRecord } from "./assemble.js";
import { withBtf } from "./btf-cache.js";
import { layoutFrom, nativePrograms } from "./native-prog.js";
import { FrameReader } from "./native-record.js";
import { RateLimit, type ProcessSource, type ProcessSourceParams } from "./source.js";

/** dist/bin/membrane-exec-events, next to this module's compiled tree. */
export function defaultLoaderBinary(): string {
  return fileURLToPath(new URL("../../../bin/membrane-exec-events", import.meta.url));
}

const CAPS = "-all,+bpf,+perfmon";

export interface NativeSourceParams extends ProcessSourceParams {
  readonly loader?: string;
  readonly btfPath?: string;
  /** The BTF offsets cache's directory (default /run/membrane-btf; "" disables it). */
  readonly btfCacheDir?: string;
  /** The ring buffer's size in bytes (a power of 2, 4 KiB..256 MiB; default 8 MiB, ~4,400 exec records). */
  readonly ringBytes?: number;
}

export class NativeSource implements ProcessSource {
  readonly kind = "native";
  private child: ChildProcess | undefined;
  private readonly limit: RateLimit;
  private stopping = false;
  private markAsked = false;
  private lostSeen = 0n;
  readonly counts = { records: 0, frames: 0, malformed: 0, lost: 0, rateLimited: 0 };

  constructor(private readonly p: NativeSourceParams) {
    this.limit = new RateLimit(p.maxEventsPerSecond ?? 0);
  }

  /** One MARK frame after the loader's next read of the ring (one byte on its stdin; one outstanding). */
  requestMark(): void {
    if (this.markAsked || !this.child?.stdin?.writable) return;
    this.markAsked = true;
    this.child.stdin.write("m");
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The loader's stdout, paused while a test or bench holds the reader back (the ring then fills). */
  pauseReading(paused: boolean): void {
    if (paused) this.child?.stdout?.pause();
    else this.child?.stdout?.resume();
  }

  get canarySeen(): boolean {
    return true;
  }

  private record(r: ProcessRecord): void {
    if (!this.limit.take()) {
      this.counts.rateLimited++;
      this.p.onDrop("rate_limit", 1);
      return;
    }
    this.p.onRecord(r);
  }

  private failure(why: string): MembraneError {
    return new MembraneError(
      "RUNTIME_SOURCE_FAILED",
      `Cannot start the native process event source: ${why}`,
      {
        hint: "it needs root, BTF (/sys/kernel/btf/vmlinux), raw tracepoints and dist/bin/membrane-exec-events (npm run build)",
      },
    );
  }

  async start(): Promise<void> {
    const loader = this.p.loader ?? defaultLoaderBinary();
    if (!existsSync(loader)) throw this.failure(`${loader} is missing`);
    // The offsets come from the cache when this kernel's were cached (btf-cache.ts): no 5.4 MB parse per start.
    const programs = nativePrograms(
      withBtf(layoutFrom, {
        ...(this.p.btfPath !== undefined ? { btfPath: this.p.btfPath } : {}),
        ...(this.p.btfCacheDir !== undefined ? { cacheDir: this.p.btfCacheDir } : {}),
      }),
    );
    const child = spawn(
      "setpriv",
      [`--bounding-set=${CAPS}`, "--inh-caps=-all", "--no-new-privs", "--", loader],
      {
        stdio: ["pipe", "pipe", "pipe"],
        env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
      },
    );
    this.child = child;
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    child.stderr?.on("data", (s: string) => (stderr = (stderr + s).slice(-2048)));
    child.stdin?.on("error", () => undefined); // a loader that exits early: told by its exit
    const frames = new FrameReader();
    await new Promise<void>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => fail("the loader did not answer within 60 s"), 60_000);
      const fail = (why: string): void => {
        clearTimeout(timer);
        if (ready) return;
        ready = true;
        reject(this.failure(why));
        child.kill("SIGKILL");
      };
      child.stdout?.on("data", (chunk: Buffer) => {
        for (const f of frames.push(chunk)) {
          switch (f.kind) {
            case "ready":
              if (!ready) {
                ready = true;
                clearTimeout(timer);
                resolve();
              }
              break;
            case "error":
              fail(f.text);
              break;
            case "lost": {
              const n = f.total - this.lostSeen;
              this.lostSeen = f.total;
              if (n > 0n) {
                this.counts.lost += Number(n);
                this.p.onDrop("lost", Number(n));
              }
              break;
            }
            case "records":
              this.counts.frames++;
              this.counts.records += f.records.length;
              for (const r of f.records) this.record(r);
              if (f.malformed > 0) {
                this.counts.malformed += f.malformed;
                this.p.onDrop("malformed", f.malformed);
              }
              break;
            case "mark":
              this.markAsked = false;
              this.p.onMark?.(f.ktime);
              break;
            case "malformed":
              // The stream lost its framing: nothing after this can be trusted; the source stops.
              this.counts.malformed++;
              this.p.onDrop("malformed", 1);
              fail(f.why);
              if (!this.stopping) child.kill("SIGTERM");
              break;
          }
        }
      });
      child.on("error", (e) => fail(e.message));
      child.on("exit", (code, signal) => {
        this.child = undefined;
        const why = `the loader exited (${signal ?? `code ${code}`})${stderr ? `: ${stderr.trim()}` : ""}`;
        if (!ready) fail(why);
        else if (!this.stopping) this.p.onExit?.(why);
      });
      const lines = programs.map((p) => `prog ${p.tracepoint} ${p.insns.toString("hex")}\n`).join("");
      const ring = this.p.ringBytes !== undefined ? `ring ${this.p.ringBytes}\n` : "";
      child.stdin?.write(`${ring}${lines}go\n`);
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      await new Promise<void>((resolve) => {
        c.once("exit", () => resolve());
        c.stdin?.end(); // the loader exits on stdin EOF; its programs go with it
        setTimeout(() => c.kill("SIGKILL"), 5000).unref();
      });
    }
  }
}
