/**
 * One GetFlows call on the relay: the request goes to every connected agent
 * unchanged (filters included), their answers are merged and sent on.
 *
 *   follow:  agent streams --RawResponse--> TimeMerger (window, bounded) --bytes--> client
 *            pool changes --> node_status events; a stream broken --> reopened from the last time seen
 *            when the node answers again, marked resumed: the agent counts what its ring overwrote
 *            in between as lost_events (nothing lost uncounted); a node that only answers its
 *            health checks late keeps its stream
 *            client slow (write() false) --> every agent stream paused until 'drain' (the agents' rings
 *            absorb it and report what they lose as lost_events, forwarded)
 *   history: every connected agent's answer collected, sorted by time, first/last `number` overall
 *
 * Unavailable nodes are named in node_status events at the start and on
 * every change, as Hubble Relay does.
 */
import { once } from "node:events";
import type { Message } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { ClientReadableStream, ServerWritableStream } from "@grpc/grpc-js";
import type { HubbleFlowsRequest } from "../observe/hubble/request.js";
import { MAX_QUEUED } from "../observe/hubble/server.js";
import { nodeStatusBytes } from "./events.js";
import { TimeMerger, type MergeStats } from "./merge.js";
import type { PeerChange, PeerPool, PeerState } from "./pool.js";
import type { RawResponse } from "./raw.js";

export type RelayCall = ServerWritableStream<Message, Uint8Array>;

export interface MergeOptions {
  /** How long a record waits for older ones from other nodes (default 200 ms). */
  readonly windowMs: number;
  /** Most records held in the window (default 10,000); beyond it the oldest goes early. */
  readonly maxBuffered: number;
  /** How long a history (non-follow) call waits for each node (default 30 s). */
  readonly historyTimeoutMs: number;
}

const details = (e: unknown): string => (e as { details?: string }).details ?? (e as Error).message;

function statusEvents(pool: PeerPool): Uint8Array[] {
  const by = new Map<PeerState, string[]>();
  const why: string[] = [];
  for (const p of pool.peers()) {
    by.set(p.state, [...(by.get(p.state) ?? []), p.name]);
    if (p.state !== "connected") why.push(`${p.name}: ${p.message}`);
  }
  return [...by.entries()].map(([state, names]) =>
    nodeStatusBytes(state, names, state === "connected" ? "" : why.join("; ")),
  );
}

/** Runs one follow call until the client cancels (or every stream reached `until`). */
export class FollowFlows {
  readonly merger: TimeMerger<RawResponse>;
  private readonly streams = new Map<string, ClientReadableStream<RawResponse>>();
  /** Per node: the newest time seen and how many records carried it (to skip them when reopening). */
  private readonly last = new Map<string, { ms: number; n: number }>();
  private readonly ended = new Set<string>();
  private paused = false;
  private done = false;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private finished!: () => void;

  constructor(
    private readonly pool: PeerPool,
    private readonly request: Message,
    private readonly req: HubbleFlowsRequest,
    private readonly call: RelayCall,
    private readonly o: MergeOptions,
  ) {
    this.merger = new TimeMerger<RawResponse>({
      windowMs: o.windowMs,
      maxBuffered: o.maxBuffered,
      emit: (r) => this.write(r.bytes),
    });
  }

  run(): Promise<void> {
    const done = new Promise<void>((r) => (this.finished = r));
    this.call.on("cancelled", () => this.close(false));
    this.call.on("close", () => this.close(false));
    for (const b of statusEvents(this.pool)) this.write(b);
    this.unsubscribe = this.pool.on((c) => this.onChange(c));
    for (const p of this.pool.peers()) if (p.state === "connected") this.open(p.name);
    this.timer = setInterval(() => this.merger.tick(Date.now()), Math.max(10, this.o.windowMs / 4));
    return done;
  }

  private onChange(c: PeerChange): void {
    if (this.done) return;
    this.write(nodeStatusBytes(c.state, [c.name], c.message));
    if (c.state === "connected") this.open(c.name);
    // A node whose health checks time out keeps its stream while the stream lives: a starved agent
    // answers late, and cancelling its stream to reopen it later lost what its ring overwrote in
    // between (the stall of 3 x 20,000 flows/s under load). A dead one breaks the stream ('error').
    else if (c.state === "gone") this.drop(c.name);
  }

  private open(name: string): void {
    const peer = this.pool.connected(name);
    if (peer === undefined || this.streams.has(name) || this.ended.has(name)) return;
    const last = this.last.get(name);
    // Back after a break: from the last time seen (the agent's ring still holds what we missed).
    const request =
      last === undefined
        ? this.request
        : ({ ...this.request, number: 0n, since: timestampFromMs(Math.floor(last.ms)) } as Message);
    let skipBefore = last?.ms ?? -Infinity;
    let skipSame = last?.n ?? 0;
    const s = peer.flows(request, last !== undefined);
    this.streams.set(name, s);
    if (this.paused) s.pause();
    s.on("data", (r: RawResponse) => {
      if (this.streams.get(name) !== s) return; // a dropped stream's last buffered answers: asked again
      if (r.kind === "lost_events") return this.merger.push(r); // the gap of a resumed stream, or a lap
      if (r.kind !== "flow") return;
      if (r.timeMs < skipBefore) return; // a duplicate of what the earlier stream gave
      if (r.timeMs === skipBefore && skipSame > 0) {
        skipSame--;
        return;
      }
      skipBefore = -Infinity;
      const l = this.last.get(name);
      if (l === undefined || r.timeMs > l.ms) this.last.set(name, { ms: r.timeMs, n: 1 });
      else if (r.timeMs === l.ms) l.n++;
      this.merger.push(r);
    });
    s.on("error", (e) => {
      if (this.streams.get(name) !== s) return;
      this.streams.delete(name);
      if (!this.done) this.pool.markUnavailable(name, details(e));
    });
    s.on("end", () => {
      if (this.streams.get(name) !== s) return;
      this.streams.delete(name);
      this.ended.add(name);
      if (this.req.until !== undefined && this.streams.size === 0) this.close(true);
    });
  }

  private drop(name: string): void {
    const s = this.streams.get(name);
    this.streams.delete(name);
    s?.cancel();
  }

  private write(bytes: Uint8Array): void {
    if (this.done) return;
    if (!this.call.write(bytes) && !this.paused && this.call.writableLength >= MAX_QUEUED) {
      this.paused = true;
      for (const s of this.streams.values()) s.pause();
      void once(this.call, "drain").then(
        () => {
          this.paused = false;
          for (const s of this.streams.values()) s.resume();
        },
        () => undefined,
      );
    }
  }

  private close(end: boolean): void {
    if (this.done) return;
    if (end) this.merger.flush();
    this.done = true;
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
    for (const name of [...this.streams.keys()]) this.drop(name);
    if (end) this.call.end();
    this.finished();
  }
}

/** A history call: every connected node's answer, in time order, first/last `number` overall. */
export async function historyFlows(
  pool: PeerPool,
  request: Message,
  req: HubbleFlowsRequest,
  call: RelayCall,
  o: MergeOptions,
): Promise<MergeStats> {
  const events = statusEvents(pool);
  const got: RawResponse[] = [];
  const collect = (name: string): Promise<void> =>
    new Promise((resolve) => {
      const peer = pool.connected(name);
      if (peer === undefined) return resolve();
      const s = peer.flows(request);
      const t = setTimeout(() => s.cancel(), o.historyTimeoutMs);
      s.on("data", (r: RawResponse) => {
        if (r.kind === "flow" || r.kind === "lost_events") got.push(r);
      });
      s.on("end", () => (clearTimeout(t), resolve()));
      s.on("error", (e) => {
        clearTimeout(t);
        pool.markUnavailable(name, details(e));
        events.push(nodeStatusBytes("unavailable", [name], details(e)));
        resolve();
      });
    });
  await Promise.all(pool.peers().map((p) => collect(p.name)));
  // Stable sort by time; records without one go last (they cannot be placed).
  const order = got.map((r, i) => ({ r, i }));
  order.sort((a, b) => (a.r.timeMs || Infinity) - (b.r.timeMs || Infinity) || a.i - b.i);
  let out = order.map((x) => x.r);
  if (req.number !== undefined) out = req.first ? out.slice(0, req.number) : out.slice(-req.number);
  let cancelled = false;
  call.on("cancelled", () => (cancelled = true));
  for (const b of [...events, ...out.map((r) => r.bytes)]) {
    if (cancelled) break;
    if (!call.write(b) && call.writableLength >= MAX_QUEUED)
      await Promise.race([once(call, "drain"), once(call, "cancelled")]);
  }
  if (!cancelled) call.end();
  return { pushed: got.length, emitted: out.length, buffered: 0, late: 0, overflow: 0 };
}
