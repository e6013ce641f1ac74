/**
 * What the agent needs of a process event source, whichever it is
 * (./native.ts: our raw tracepoint programs; ./bpftrace.ts: the fallback), and
 * the per-second bound both apply to the records they pass on.
 */
import type { ProcessRecord } from "./assemble.js";
import type { CanaryParams } from "./canary.js";

export type DropReason = "lost" | "malformed" | "orphan" | "rate_limit";

export interface ProcessSourceParams {
  readonly onRecord: (r: ProcessRecord) => void;
  readonly onDrop: (reason: DropReason, n: number) => void;
  /** Every record the kernel wrote before this monotonic time has been passed on (answers requestMark). */
  readonly onMark?: (ktime: bigint) => void;
  readonly onExit?: (why: string) => void;
  /** Records per second passed on; beyond, dropped and counted (0 = no limit). */
  readonly maxEventsPerSecond?: number;
  /** bpftrace only: the start's canary (./canary.ts); `false`: start resolves at "attached". */
  readonly canary?: CanaryParams | false;
  /** bpftrace only: told when no canary was seen within its safety net. */
  readonly onCanaryUnseen?: (spawned: number) => void;
}

export interface ProcessSource {
  /** Which source runs: "native" (ring buffer) or "bpftrace" (the fallback). */
  readonly kind: "native" | "bpftrace";
  /** The child process that holds the programs. */
  readonly pid: number | undefined;
  /** Whether the programs are known to run (the native source's are once started). */
  readonly canarySeen: boolean;
  /** Lost in the kernel (buffer full), as counted so far. */
  readonly counts: { readonly lost: number; readonly malformed: number; readonly rateLimited: number };
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Asks for one onMark after the source's next read of the kernel's buffer (native only). */
  requestMark?(): void;
}

/** At most `max` takes per wall-clock second (0 = no limit). */
export class RateLimit {
  private windowStart = 0;
  private count = 0;

  constructor(private readonly max: number) {}

  take(): boolean {
    if (this.max <= 0) return true;
    const now = Date.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.count = 0;
    }
    return ++this.count <= this.max;
  }
}
