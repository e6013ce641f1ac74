/**
 * Runtime events of the node's processes (src/runtime), attributed to the
 * endpoints they live in.
 *
 *   process event source (native ring buffer, or bpftrace where it cannot load: source/select.ts)
 *        --exec/fork/exit--> ProcessCache (+ /proc scan at start)
 *        --process_exec / process_exit--> RuntimeRing (API, CLI) + RuntimeMetrics + JSON lines file
 *   policy sensors (src/runtime/policy, enforce) --push(event)--> the same ring, metrics and file
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
import { bootTimeNs } from "../../runtime/exec-id.js";
import { ProcessCache } from "../../runtime/process-cache.js";
import { scanProc } from "../../runtime/proc-scan.js";
import { RuntimeMetrics } from "../../runtime/metrics.js";
import { RuntimeRing, type RuntimeQuery } from "../../runtime/ring.js";
import type { RuntimeEvent, RuntimeSink, TetragonPod, TetragonProcess } from "../../runtime/events.js";

/** Bytes of export lines gathered before a write (a flood's turn of the event loop: ~250 events). */
const CHUNK = 256 * 1024;

export interface RuntimeParams {
  readonly nodeName: string;
  readonly ringCapacity?: number;
  /** Tetragon JSON lines appended here (absent = no file). */
  readonly exportPath?: string;
  /** Process records per second; beyond, dropped and counted (0 = no limit). */
  readonly maxEventsPerSecond?: number;
  /** Which process event source: "auto" tries the native one, then bpftrace (default). */
  readonly source?: SourcePreference;
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
  private readonly sourceParams: SelectParams;
  private running: ProcessSource | undefined;
  /** Why the native source did not start, when bpftrace runs instead. */
  private fallbackWhy = "";
  private readonly pods = new Map<number, TetragonPod>();
  private readonly inodeOf = new Map<string, number>();
  private file: WriteStream | undefined;
  /** Lines not yet handed to the file (encoded as they come), written once per turn of the event loop. */
  private chunk = Buffer.allocUnsafe(CHUNK);
  private used = 0;
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
    this.sourceParams = {
      ...(p.source !== undefined ? { prefer: p.source } : {}),
      onFallback: (why) => {
        this.fallbackWhy = why;
        d.logger.warn({ err: why }, "runtime events: the native source cannot load here; using bpftrace");
      },
      ...(p.maxEventsPerSecond !== undefined ? { maxEventsPerSecond: p.maxEventsPerSecond } : {}),
      onRecord: (r) => {
        if (r.kind === "fork") return this.cache.fork(r.pid, r.ppid, r.ktime);
        if (r.kind === "exec") return this.push(this.event({ process_exec: this.cache.exec(r) }, r.ktime));
        const exit = this.cache.exit(r.pid, r.code, r.ktime);
        if (exit) this.push(this.event({ process_exit: exit }, r.ktime));
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

  private event(e: { process_exec: unknown } | { process_exit: unknown }, ktime: bigint): RuntimeEvent {
    const ns = this.bootNs + ktime;
    const time =
      new Date(Number(ns / 1_000_000n)).toISOString().slice(0, 19) +
      "." +
      (ns % 1_000_000_000n).toString().padStart(9, "0") +
      "Z";
    return { ...e, node_name: this.p.nodeName, time } as RuntimeEvent;
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
    const line = JSON.stringify(e) + "\n";
    if (this.used + 3 * line.length > CHUNK) this.flush();
    if (3 * line.length > CHUNK) this.file.write(line);
    else {
      if (this.used === 0) setImmediate(() => this.flush());
      this.used += this.chunk.write(line, this.used);
    }
  }

  private flush(): void {
    if (this.used === 0) return;
    this.file?.write(this.chunk.subarray(0, this.used));
    this.chunk = Buffer.allocUnsafe(CHUNK); // the stream holds the written one until it is on disk
    this.used = 0;
  }

  policyLost(lost: { readonly kernel: number; readonly agent: number }): void {
    this.metrics.policyLost(lost);
  }

  processOf(pid: number): { process: TetragonProcess; parent?: TetragonProcess } | undefined {
    const e = this.cache.get(pid);
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
      // 1 once the source is known to run (bpftrace: its start's canary exec was seen; native: attached).
      canarySeen: s?.canarySeen ? 1 : 0,
    };
  }
}
