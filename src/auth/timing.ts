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
 */
import type { Logger } from "pino";

export type Phase = "start" | "connected" | "answered" | "validated" | "released" | "kernel";

export class Phases {
  private readonly t0 = performance.now();
  /** From the queue reader receiving the packet to the agent reading it (ms; 0 without a packet). */
  constructor(readonly readLagMs = 0) {}
  readonly marks: Partial<Record<Phase, number>> = {};
  /** How the pair was authenticated: channel (pooled connection), tls (a connection per pair), local. */
  via = "";
  /** A pooled connection already open was used. */
  reused = false;

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
}

const KEEP = 256;

/** The last profiles (bench/auth reads them), each logged at info once complete. */
export class Profiles {
  readonly recent: PairProfile[] = [];
  constructor(private readonly logger: Logger) {}

  /** The pair's kernel entry is written: its profile is complete. */
  done(source: number, destination: number, ph: Phases): void {
    ph.mark("kernel");
    const p: PairProfile = { source, destination, via: ph.via, reused: ph.reused, readLagMs: Math.round(ph.readLagMs * 100) / 100, ms: { ...ph.marks } }; // prettier-ignore
    this.recent.push(p);
    if (this.recent.length > KEEP) this.recent.splice(0, this.recent.length - KEEP);
    this.logger.info({ ...p, ms: undefined, phases: p.ms }, "authentication profile");
  }
}
