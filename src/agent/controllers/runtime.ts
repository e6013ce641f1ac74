/**
 * Runtime events of the node's processes (src/runtime), attributed to the
 * endpoints they live in.
 *
 *   process event source (native ring buffer, or bpftrace where it cannot load: source/select.ts)
 *        --exec/fork/exit--> ProcessCache (+ /proc scan at start)
 *        --process_exec / process_exit--> RuntimeRing (API, CLI) + RuntimeMetrics + JSON lines file
 *   policy sensors (src/runtime/policy, enforce) --pushPolicy(event)--> the same ring, metrics and file
 *        (an event whose process is not known yet waits in the event cache: runtime/event-cache.ts)
 *
 * Attribution: a process belongs to the endpoint whose network namespace
 * (inode of /proc/<pid>/ns/net, read in the kernel at exec) is the endpoint's;
 * every other process is the host's (no pod). Inodes of endpoint namespaces are
 * read once per namespace, when an event names an inode not known yet.
 */
import { createWriteStream, statSync, type WriteStream } from "node:fs";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { Revisions, type Controller } from "../controller.js";
import type { EndpointView } from "./endpoint-record.js";
import { startProcessSource, type SelectParams, type SourcePreference } from "../../runtime/source/select.js";
import type { ProcessSource } from "../../runtime/source/source.js";
import type { ProcessRecord } from "../../runtime/source/assemble.js";
import { bootTimeNs } from "../../runtime/exec-id.js";
import { ProcessCache } from "../../runtime/process-cache.js";
import { scanProc } from "../../runtime/proc-scan.js";
import { RuntimeMetrics } from "../../runtime/metrics.js";
import { RuntimeRing, type RuntimeQuery } from "../../runtime/ring.js";
import {
  eventProcess,
  type ProcessExec,
  type ProcessExit,
  type RuntimeEvent,
  type RuntimeSink,
  type TetragonPod,
  type TetragonProcess,
} from "../../runtime/events.js";
import { exportLine } from "../../runtime/export-line.js";
import type { RuntimePolicyEvent } from "../../runtime/enforce/events.js";
import { EventCache } from "../../runtime/event-cache.js";
import { policyEventToRuntime } from "../../runtime/policy-event.js";

/** Bytes of export lines gathered before a write (a flood's turn of the event loop: ~250 events). */
const CHUNK = 256 * 1024;
/**
 * Export lines are written once this many bytes wait (at the end of the turn), else at most
 * FLUSH_MS after the first: at an exec loop's pace a write per turn of the event loop woke a
 * worker thread and then this thread again for every frame of the loader (a tenth of the agent's
 * CPU per process event on a loaded machine, bench/runtime-overhead.ts).
 */
const FLUSH_AT = 64 * 1024;
const FLUSH_MS = 100;
/** A clone this old when its process makes an event is taken as it is (see the event cache's `known`). */
const CLONE_SETTLE_NS = 100_000_000n;

export interface RuntimeParams {
  readonly nodeName: string;
  readonly ringCapacity?: number;
  /** Tetragon JSON lines appended here (absent = no file). */
  readonly exportPath?: string;
  /** Process records per second; beyond, dropped and counted (0 = no limit). */
  readonly maxEventsPerSecond?: number;
  /** Which process event source: "auto" tries the native one, then bpftrace (default). */
  readonly source?: SourcePreference;
  /** How long a policy event waits for its process before it goes out without (default 1,000 ms). */
  readonly eventCacheAgeMs?: number;
}

export interface RuntimeControllerDeps {
  readonly logger: Logger;
  readonly endpoints: () => readonly EndpointView[];
  readonly registry?: Registry;
}

export class RuntimeController implements Controller, RuntimeSink {
  readonly name = "runtime";
  readonly revisions = new Revisions();
  readonly ring: RuntimeRing;
  readonly metrics: RuntimeMetrics;
  readonly cache: ProcessCache;
  /** Policy events whose process was not known yet when they came (Tetragon's eventcache). */
  readonly held: EventCache<RuntimePolicyEvent>;
  /** Process records were read up to this monotonic time (their own ktime, or the source's mark). */
  private watermark = 0n;
  private retryQueued = false;
  /** Policy events that went out without their process (no exec_id). */
  private withoutProcess = 0;
  private readonly sourceParams: SelectParams;
  private running: ProcessSource | undefined;
  /** Why the native source did not start, when bpftrace runs instead. */
  private fallbackWhy = "";
  private readonly pods = new Map<number, TetragonPod>();
  private readonly inodeOf = new Map<string, number>();
  private file: WriteStream | undefined;
  /** Lines not yet handed to the file (encoded as they come), written once per turn of the event loop. */
  private chunk: Buffer = Buffer.allocUnsafe(CHUNK);
  private used = 0;
  /** Chunks whose write completed, to fill again. */
  private readonly spare: Buffer[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private flushSoon = false;
  private readonly bootNs = bootTimeNs();
  /** The device of namespace files (nsfs): a path bound to a namespace has it. */
  private readonly nsfsDev = statSync("/proc/self/ns/net").dev;

  constructor(
    private readonly p: RuntimeParams,
    private readonly d: RuntimeControllerDeps,
  ) {
    this.ring = new RuntimeRing(p.ringCapacity ?? 16_384);
    this.metrics = new RuntimeMetrics(d.registry);
    this.cache = new ProcessCache({ nodeName: p.nodeName, bootNs: this.bootNs, podOf: (n) => this.podOf(n) });
    this.held = new EventCache<RuntimePolicyEvent>({
      ...(p.eventCacheAgeMs !== undefined ? { maxAgeMs: p.eventCacheAgeMs } : {}),
      // A fork read before its exec would name the parent's binary: a young clone (forked under
      // CLONE_SETTLE_NS before the event: a shell's fork and exec are well under 1 ms apart) waits until the records were read past the event (its
      // exec, if any, then came); any other known image goes out at once. A worker forked long ago
      // that never exec'd is not held for every event it makes.
      known: (pid, ktime) => {
        const e = this.cache.at(pid, ktime);
        if (e === undefined) return false;
        if (e.process.flags !== "clone" || this.watermark >= ktime) return true;
        return ktime - e.ktime >= CLONE_SETTLE_NS;
      },
      ready: (pid, ktime) => this.watermark >= ktime && this.cache.at(pid, ktime) !== undefined,
      // Out of time or room, an event still goes with what the cache knows (a young clone's own
      // identity); only one whose process is unknown goes without exec_id, and is counted.
      release: (e, found) => {
        const out = policyEventToRuntime(e, this, p.nodeName);
        if (!found && eventProcess(out).exec_id === "") {
          this.withoutProcess++;
          this.metrics.processInfoMissing(e.type);
        }
        this.push(out);
      },
    });
    this.sourceParams = {
      ...(p.source !== undefined ? { prefer: p.source } : {}),
      onFallback: (why) => {
        this.fallbackWhy = why;
        d.logger.warn({ err: why }, "runtime events: the native source cannot load here; using bpftrace");
      },
      ...(p.maxEventsPerSecond !== undefined ? { maxEventsPerSecond: p.maxEventsPerSecond } : {}),
      onRecord: (r) => this.record(r),
      onMark: (ktime) => {
        if (ktime > this.watermark) this.watermark = ktime;
        if (this.held.size > 0) this.queueRetry();
      },
      onDrop: (reason, n) => this.metrics.drop(reason, n),
      onExit: (why) => {
        this.revisions.fail(new Error(why));
        d.logger.error({ err: why }, "runtime event source stopped");
      },
      onCanaryUnseen: (spawned) =>
        d.logger.warn(
          { canaries: spawned },
          "runtime event source: its probes are attached but no canary exec was seen; events may be missing until its programs run (status canarySeen 0)",
        ),
    };
  }

  /** The running process event source (after start). */
  get source(): ProcessSource | undefined {
    return this.running;
  }

  /** The event with the node's name and its time (the exec's start_time, the exit's time: already made). */
  private execEvent(x: ProcessExec): RuntimeEvent {
    return { process_exec: x, node_name: this.p.nodeName, time: x.process.start_time };
  }

  private exitEvent(x: ProcessExit): RuntimeEvent {
    return { process_exit: x, node_name: this.p.nodeName, time: x.time };
  }

  /** The endpoint of a network namespace inode; undefined = the host (RuntimeSink). */
  podOf(netns: number): TetragonPod | undefined {
    const known = this.pods.get(netns);
    if (known) return known;
    for (const ep of this.d.endpoints()) {
      const path = ep.netns.startsWith("/") ? ep.netns : `/run/netns/${ep.netns}`;
      let ino = this.inodeOf.get(path);
      if (ino === undefined) {
        try {
          const st = statSync(path);
          // While `ip netns add` runs, the path is an empty file not yet bound to the namespace.
          if (st.dev !== this.nsfsDev) continue;
          ino = Number(st.ino);
        } catch {
          continue; // being created or deleted
        }
        this.inodeOf.set(path, ino);
      }
      if (ino === netns) {
        const pod: TetragonPod = {
          namespace: ep.namespace,
          name: ep.name,
          pod_labels: { ...ep.labels },
          workload: ep.name,
        };
        this.pods.set(netns, pod);
        return pod;
      }
    }
    return undefined;
  }

  async start(): Promise<void> {
    if (this.p.exportPath) this.file = createWriteStream(this.p.exportPath, { flags: "a", mode: 0o600 });
    // probes attached first: nothing starts unseen between scan and source
    this.running = await startProcessSource(this.sourceParams);
    const n = await scanProc(this.cache, this.p.nodeName, this.bootNs);
    this.revisions.realize(this.revisions.bump());
    this.d.logger.info(
      { processes: n, source: this.running.kind, pid: this.running.pid },
      "runtime events on",
    );
  }

  async stop(): Promise<void> {
    await this.running?.stop();
    this.held.drain();
    this.flush();
    await new Promise<void>((r) => (this.file ? this.file.end(r) : r()));
  }

  /** An endpoint's labels changed or it went away: attributions are made again. */
  endpointsChanged(): void {
    this.pods.clear();
    this.inodeOf.clear();
    this.cache.refreshPods();
  }

  push(e: RuntimeEvent): void {
    this.ring.push(e);
    this.metrics.observe(e);
    if (!this.file) return;
    // Encoded into one buffer and written once per turn (bench/runtime-rate.ts: a stream write per
    // event took a tenth of the pipeline's CPU; joining the lines into one string first, four times that).
    const line = exportLine(e); // each process's JSON made once (runtime/export-line.ts)
    if (this.used + 3 * line.length > CHUNK) this.flush();
    if (3 * line.length > CHUNK) this.file.write(line);
    else {
      if (this.used === 0) this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS).unref();
      this.used += this.chunk.write(line, this.used);
      if (this.used >= FLUSH_AT && !this.flushSoon) {
        this.flushSoon = true;
        setImmediate(() => this.flush());
      }
    }
  }

  private flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.flushSoon = false;
    if (this.used === 0) return;
    const full = this.chunk;
    // The stream holds the written bytes until they are on disk; the buffer comes back afterwards
    // (a new 256 KiB buffer per turn of the event loop was most of the pipeline's garbage).
    this.file?.write(full.subarray(0, this.used), () => {
      if (this.spare.length < 4) this.spare.push(full);
    });
    this.chunk = this.spare.pop() ?? Buffer.allocUnsafe(CHUNK);
    this.used = 0;
  }

  /** A process record of the event source: the cache, then process_exec / process_exit out. */
  record(r: ProcessRecord): void {
    if (r.ktime > this.watermark) this.watermark = r.ktime;
    if (this.held.size > 0) this.queueRetry();
    if (r.kind === "fork") return this.cache.fork(r.pid, r.ppid, r.ktime);
    if (r.kind === "exec") return this.push(this.execEvent(this.cache.exec(r)));
    const exit = this.cache.exit(r.pid, r.code, r.ktime);
    if (exit) this.push(this.exitEvent(exit));
  }

  /** A TracingPolicy event: out now when its process is known, else held until it is (RuntimeSink). */
  pushPolicy(e: RuntimePolicyEvent): void {
    const before = this.held.accesses;
    this.held.offer(e.pid, e.ktimeNs, e);
    if (this.held.accesses !== before) {
      this.metrics.eventCacheAccess();
      this.running?.requestMark?.(); // the source says when it has read past now (one frame, not a poll)
    }
  }

  /** One retry after the records of a frame were applied (not one per record). */
  private queueRetry(): void {
    if (this.retryQueued) return;
    this.retryQueued = true;
    queueMicrotask(() => {
      this.retryQueued = false;
      this.held.retry();
    });
  }

  policyLost(lost: { readonly kernel: number; readonly agent: number }): void {
    this.metrics.policyLost(lost);
  }

  processOf(pid: number, ktime = 0n): { process: TetragonProcess; parent?: TetragonProcess } | undefined {
    const e = this.cache.at(pid, ktime);
    if (!e) return undefined;
    const parent = this.cache.get(e.ppid);
    return { process: e.process, ...(parent ? { parent: parent.process } : {}) };
  }

  read(q: RuntimeQuery): RuntimeEvent[] {
    return this.ring.read(q);
  }

  status(): Record<string, number | string> {
    const s = this.running;
    return {
      written: this.ring.written,
      overwritten: this.ring.overwritten,
      processes: this.cache.size,
      source: s?.kind ?? "none",
      ...(this.fallbackWhy ? { nativeUnavailable: this.fallbackWhy } : {}),
      malformed: s?.counts.malformed ?? 0,
      lost: s?.counts.lost ?? 0,
      rateLimited: s?.counts.rateLimited ?? 0,
      // policy events held until their process was known, and those that went out without it
      eventCacheHeld: this.held.accesses,
      eventCacheMissed: this.withoutProcess,
      // 1 once the source is known to run (bpftrace: its start's canary exec was seen; native: attached).
      canarySeen: s?.canarySeen ? 1 : 0,
    };
  }
}
