/**
 * The proxy benchmark's load generator. It runs in its own process (forked
 * by proxy.ts, driven over IPC), so that the proxy under test, the upstream
 * and the generator are three processes the kernel schedules on its own.
 *
 *   parent --{id, spec: LoadSpec}--> runLoad --channels (load-channels.ts)--> target
 *   parent <--{id, result: LoadResult}--
 *
 * Two shapes of load, each over `connections` keep-alive channels with one
 * request in flight per channel (no pipelining):
 *   closed: every channel sends its next request as soon as the answer came
 *           back: the most the target can do (saturation).
 *   open:   requests become due at a fixed `rate`; a timer tick (about 1 ms)
 *           queues the due ones and each goes out on a free channel. Latency
 *           runs from the tick that queued it, so time spent waiting for a
 *           free channel (the target falling behind) counts; the timer's own
 *           lateness does not, and slots the generator missed by more than
 *           MAX_CATCH_UP_MS while it was descheduled are skipped (counted),
 *           not sent as one burst.
 */
import { benchArgs, forkedOnly } from "./cli.js";
import { openChannel, type Channel, type ChannelKind, type DnsTarget } from "./load-channels.js";

export interface LoadSpec {
  readonly kind: ChannelKind;
  readonly port: number;
  /** Several listeners (one per proxy worker): connection i goes to ports[i % n], as the kernel's round robin would. */
  readonly ports?: readonly number[];
  readonly connections: number;
  /** Requests per second for an open loop; absent: closed loop. */
  readonly rate?: number;
  readonly durationMs: number;
  /** DNS: another address than 127.0.0.1, the local address to bind, a new socket per query (load-channels.ts). */
  readonly dns?: Omit<DnsTarget, "port">;
}

export interface LoadResult {
  readonly count: number;
  readonly perSecond: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** Deepest queue of due requests waiting for a free channel (open loop). */
  readonly maxQueue: number;
  /** Due requests not sent because the generator itself was late (descheduled) by more than MAX_CATCH_UP_MS. */
  readonly skipped: number;
  /** The generator's own CPU use, % of one core: near 100 means it, not the target, was the limit. */
  readonly loadgenCpuPct: number;
}

const TIMEOUT_MS = { http: 5000, dns: 1000 } as const;
/**
 * How far behind schedule the generator catches up. A stall of the
 * generator's own process would otherwise come back as a burst that no
 * client sent on purpose (and that hurts slower targets more); slots older
 * than this are skipped and counted instead.
 */
const MAX_CATCH_UP_MS = 3;

export function percentile(sorted: Float64Array | readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

class Recorder {
  private lat = new Float64Array(1 << 16);
  count = 0;
  errors = 0;

  add(ok: boolean, ms: number): void {
    if (!ok) {
      this.errors++;
      return;
    }
    if (this.count === this.lat.length) {
      const bigger = new Float64Array(this.lat.length * 2);
      bigger.set(this.lat);
      this.lat = bigger;
    }
    this.lat[this.count++] = ms;
  }

  sorted(): Float64Array {
    return this.lat.subarray(0, this.count).sort();
  }
}

function closedLoop(channels: Channel[], end: number, rec: Recorder): Promise<void> {
  return new Promise((resolve) => {
    let running = channels.length;
    const loop = (ch: Channel): void => {
      if (!ch.usable || performance.now() >= end) {
        if (--running === 0) resolve();
        return;
      }
      const t0 = performance.now();
      ch.send((ok) => {
        rec.add(ok, performance.now() - t0);
        loop(ch);
      });
    };
    if (running === 0) resolve();
    for (const ch of channels) loop(ch);
  });
}

function openLoop(
  channels: Channel[],
  rate: number,
  end: number,
  rec: Recorder,
): Promise<{ maxQueue: number; skipped: number }> {
  return new Promise((resolve) => {
    const interval = 1000 / rate;
    const free = [...channels];
    const queue: number[] = [];
    let head = 0;
    let maxQueue = 0;
    let skipped = 0;
    let inFlight = 0;
    let nextDue = performance.now();
    const finish = (): void => {
      if (nextDue >= end && head === queue.length && inFlight === 0) resolve({ maxQueue, skipped });
    };
    const dispatch = (): void => {
      while (head < queue.length && free.length > 0) {
        const ch = free.pop();
        if (!ch?.usable) continue;
        const queuedAt = queue[head++] ?? 0;
        inFlight++;
        ch.send((ok) => {
          inFlight--;
          rec.add(ok, performance.now() - queuedAt);
          if (ch.usable) free.push(ch);
          dispatch();
        });
      }
      if (free.length === 0 && inFlight === 0) {
        rec.errors += queue.length - head; // every channel broke: what is queued fails
        head = queue.length;
      }
      finish();
    };
    const tick = (): void => {
      const now = performance.now();
      while (nextDue < Math.min(now - MAX_CATCH_UP_MS, end)) {
        skipped++;
        nextDue += interval;
      }
      while (nextDue <= now && nextDue < end) {
        queue.push(now);
        nextDue += interval;
      }
      maxQueue = Math.max(maxQueue, queue.length - head);
      dispatch();
      if (nextDue < end) setTimeout(tick, 1);
    };
    tick();
  });
}

export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const channels = await Promise.all(
    Array.from({ length: spec.connections }, (_, i) =>
      openChannel(spec.kind, spec.ports?.[i % spec.ports.length] ?? spec.port, i + 1, spec.dns),
    ),
  );
  const rec = new Recorder();
  const expiry = setInterval(() => {
    const before = performance.now() - TIMEOUT_MS[spec.kind];
    for (const ch of channels) ch.expire(before);
  }, 100);
  const cpu0 = process.cpuUsage();
  const start = performance.now();
  const end = start + spec.durationMs;
  let open = { maxQueue: 0, skipped: 0 };
  try {
    if (spec.rate === undefined) await closedLoop(channels, end, rec);
    else open = await openLoop(channels, spec.rate, end, rec);
  } finally {
    clearInterval(expiry);
    for (const ch of channels) ch.close();
  }
  const elapsed = performance.now() - start;
  const cpu = process.cpuUsage(cpu0);
  const lat = rec.sorted();
  return {
    count: rec.count,
    perSecond: Math.round((rec.count / elapsed) * 1000),
    p50Ms: +percentile(lat, 50).toFixed(3),
    p90Ms: +percentile(lat, 90).toFixed(3),
    p99Ms: +percentile(lat, 99).toFixed(3),
    errors: rec.errors,
    ...open,
    loadgenCpuPct: Math.round(((cpu.user + cpu.system) / 1000 / elapsed) * 100),
  };
}

interface LoadRequest {
  readonly id: number;
  readonly spec: LoadSpec;
}

/** Child entry: answers each LoadRequest from the parent, one at a time. */
function serve(): void {
  process.on("message", (m: LoadRequest) => {
    runLoad(m.spec).then(
      (result) => process.send?.({ id: m.id, result }),
      (e: unknown) => process.send?.({ id: m.id, error: String(e) }),
    );
  });
  process.on("disconnect", () => process.exit(0));
  process.send?.({ ready: true });
}

if (process.argv[1]?.endsWith("/load.js")) {
  benchArgs({
    script: "load",
    measures: "Not a benchmark of its own: the proxy and gateway benchmarks' load generator, forked by them with an IPC channel; answers each load request with its result.", // prettier-ignore
    root: false,
    flags: {},
  });
  forkedOnly("load.js", "proxy.js or gateway.js");
  serve();
}
