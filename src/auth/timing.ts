/**
 * Where the time of a held first packet goes (issue 12 item 8's profile): marks taken along the
 * path, kept for the last pairs and logged once the pair's kernel entry is written.
 *
 *   [readLag: the reader process receives it -> the agent reads it; 0 when the agent reads the
 *   queue with its own socket (nfqueue-socket.ts)] queued (the agent reads the packet) -> start (its handshake begins) -> connected (a pooled
 *   connection ready, or a TCP + TLS connection made) -> answered (the peer's proof back) ->
 *   validated -> released (verdict sent) -> kernel (entry written)
 *
 * Each mark is milliseconds since `queued` (since `start` for a pair with no held packet: a
 * prefill or a rotation). Not seen here: the kernel queuing the packet to the reader's receive,
 * and the verdict's way back (agent -> reader -> kernel); the client's connect time bounds them.
 *
 * What else the profile says of a slow pair (which samples pay a tail, and why): how many chain
 * validations missed the cache (a miss parses certificates), whether the peer's answer carried a
 * signature (the first time its SVID showed on the connection), and, from the packet read to the
 * kernel entry, how long the agent's event loop ran anything (`busyMs`: this pair's work and any
 * other; the rest it waited) and how long garbage collection paused it (`gcMs`).
 */
import { PerformanceObserver, performance, type EventLoopUtilization } from "node:perf_hooks";
import type { Logger } from "pino";

export type Phase = "start" | "connected" | "answered" | "validated" | "released" | "kernel";

export class Phases {
  readonly t0 = performance.now();
  readonly elu0: EventLoopUtilization = performance.eventLoopUtilization();
  /** From the queue reader receiving the packet to the agent reading it (ms; 0 without a packet). */
  constructor(readonly readLagMs = 0) {}
  readonly marks: Partial<Record<Phase, number>> = {};
  /** How the pair was authenticated: channel (pooled connection), tls (a connection per pair), local. */
  via = "";
  /** A pooled connection already open was used. */
  reused = false;
  /** Chain validations on this pair's path that missed the cache (each parsed the certificates). */
  misses = 0;
  /** The peer's answer carried a proof of its key (its SVID's first showing on the connection). */
  signed = false;

  mark(p: Phase): void {
    this.marks[p] ??= Math.round((performance.now() - this.t0) * 100) / 100;
  }
}

export interface PairProfile {
  readonly source: number;
  readonly destination: number;
  readonly via: string;
  readonly reused: boolean;
  readonly readLagMs: number;
  readonly ms: Partial<Record<Phase, number>>;
  readonly misses: number;
  readonly signed: boolean;
  /** From the packet read to the kernel entry: the event loop running (anything), and GC pauses (ms). */
  readonly busyMs: number;
  readonly gcMs: number;
}

const KEEP = 256;
const round2 = (x: number): number => Math.round(x * 100) / 100;

/** The last profiles (bench/auth reads them), each logged at info once complete. */
export class Profiles {
  readonly recent: PairProfile[] = [];
  /** Recent GC pauses (start, end; performance.now() ms), to charge them to the pairs they delayed. */
  private readonly gcs: { from: number; to: number }[] = [];
  private readonly gc = new PerformanceObserver((l) => {
    for (const e of l.getEntries()) this.gcs.push({ from: e.startTime, to: e.startTime + e.duration });
    if (this.gcs.length > KEEP) this.gcs.splice(0, this.gcs.length - KEEP);
  });

  constructor(private readonly logger: Logger) {
    this.gc.observe({ entryTypes: ["gc"] });
  }

  /** The pair's kernel entry is written: its profile is complete. */
  done(source: number, destination: number, ph: Phases): void {
    ph.mark("kernel");
    const now = performance.now();
    const busyMs = round2(performance.eventLoopUtilization(ph.elu0).active);
    const gcMs = round2(this.gcs.reduce((t, g) => t + Math.max(0, Math.min(g.to, now) - Math.max(g.from, ph.t0)), 0)); // prettier-ignore
    const p: PairProfile = { source, destination, via: ph.via, reused: ph.reused, readLagMs: round2(ph.readLagMs), ms: { ...ph.marks }, misses: ph.misses, signed: ph.signed, busyMs, gcMs }; // prettier-ignore
    this.recent.push(p);
    if (this.recent.length > KEEP) this.recent.splice(0, this.recent.length - KEEP);
    this.logger.info({ ...p, ms: undefined, phases: p.ms }, "authentication profile");
  }

  stop(): void {
    this.gc.disconnect();
  }
}
