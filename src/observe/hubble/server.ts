/**
 * Hubble's Observer gRPC API on the agent, over the flow ring.
 *
 *   hubble / membrane observe --server  --gRPC-->  unix socket (mode 0660) | TCP with TLS (mutual with a client CA)
 *     GetFlows {whitelist, blacklist, number, first, follow, since, until}
 *        --observeRequestOf--> FlowRing.read / follow --hubbleRecord--> GetFlowsResponse stream
 *     GetNodes, ServerStatus: this node and the ring's counters; GetNamespaces: the namespaces in the ring
 *
 * A TCP listener without a certificate is refused: flows name every workload
 * and policy of the node. A stream writes only as fast as its client reads
 * (write backpressure); a lapped follower gets Hubble's lost_events record, and so does a
 * resumed one (RESUME_METADATA) for what was overwritten during its break.
 */
import { once } from "node:events";
import { fromJson, toBinary, type Message } from "@bufbuild/protobuf";
import {
  Server,
  status,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServerWritableStream,
} from "@grpc/grpc-js";
import { batchWrites } from "./batch-writes.js";
import { MembraneError } from "../../errors.js";
import { compileFilter } from "../filter.js";
import type { FlowRecord } from "../flow.js";
import type { FlowRing } from "../ring.js";
import { hubbleRecord } from "./json.js";
import { observeRequestOf, type HubbleFlowsRequest } from "./request.js";
import { hubbleSchema } from "./schema.js";
import { encodeRecord } from "./encode.js";
import { bytesFlowsService } from "./service.js";
import { bindListeners, closeListeners, type HubbleTls } from "./listeners.js";

/** What the API serves from. */
export interface HubbleSource {
  readonly nodeName: string;
  readonly version: string;
  readonly ring: FlowRing;
}

export type { HubbleTls } from "./listeners.js";

export interface HubbleServerParams {
  readonly source: HubbleSource;
  /** Unix socket path (mode 0660). */
  readonly socketPath?: string;
  /** host:port for TCP, always with TLS. */
  readonly listen?: { readonly address: string; readonly tls: HubbleTls };
  readonly onError?: (e: Error) => void;
  /** Encode every flow through protojson and fromJson/toBinary, uncached (the benchmark's comparison). */
  readonly reflectiveEncoding?: boolean;
}

type Json = Record<string, unknown>;

/** Messages a GetFlows stream may queue before it waits for the client (about 0.5 MiB of flows). */
export const MAX_QUEUED = 1024;

/**
 * gRPC metadata key of a GetFlows that resumes an earlier stream at `since` (the relay's, after
 * a break): the stream then starts with a lost_events record for what the ring overwrote since.
 * Hubble's clients never send it, so their streams are as Hubble's.
 */
export const RESUME_METADATA = "membrane-resume";

function failServe(what: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("HUBBLE_SERVE_FAILED", `Cannot serve Hubble's Observer API on ${what}: ${why}`, {
    hint: "Check the path or address and the certificate files.",
    ...(cause === undefined ? {} : { cause }),
  });
}

export class HubbleServer {
  private readonly server = new Server();
  private readonly started = process.hrtime.bigint();
  private bound: string[] = [];
  private readonly encoded = new WeakMap<FlowRecord, Uint8Array>();

  constructor(private readonly p: HubbleServerParams) {
    this.server.addService(bytesFlowsService(), {
      GetFlows: (call: ServerWritableStream<Message, Uint8Array>) => void this.getFlows(call),
      GetNodes: (_c: ServerUnaryCall<Message, Message>, cb: sendUnaryData<Message>) =>
        cb(null, this.msg(hubbleSchema().GetNodesResponse, { nodes: [this.node()] })),
      GetNamespaces: (_c: ServerUnaryCall<Message, Message>, cb: sendUnaryData<Message>) =>
        cb(null, this.msg(hubbleSchema().GetNamespacesResponse, { namespaces: this.namespaces() })),
      ServerStatus: (_c: ServerUnaryCall<Message, Message>, cb: sendUnaryData<Message>) =>
        cb(null, this.msg(hubbleSchema().ServerStatusResponse, this.status())),
    });
  }

  /** The addresses served (`unix:/path`, `host:port`). */
  get addresses(): readonly string[] {
    return this.bound;
  }

  private msg(d: Parameters<typeof fromJson>[0], j: Json): Message {
    return fromJson(d, j as never, { registry: hubbleSchema().registry });
  }

  private uptimeNs(): string {
    return String(process.hrtime.bigint() - this.started);
  }

  private status(): Json {
    const st = this.p.source.ring.stats();
    return {
      num_flows: String(st.size),
      max_flows: String(st.capacity),
      seen_flows: String(st.written),
      uptime_ns: this.uptimeNs(),
      version: this.p.source.version,
    };
  }

  private node(): Json {
    const st = this.p.source.ring.stats();
    return {
      name: this.p.source.nodeName,
      version: this.p.source.version,
      address: this.bound[0] ?? "",
      state: "NODE_CONNECTED",
      tls: { enabled: this.p.listen !== undefined },
      uptime_ns: this.uptimeNs(),
      num_flows: String(st.size),
      max_flows: String(st.capacity),
      seen_flows: String(st.written),
    };
  }

  private namespaces(): Json[] {
    const seen = new Set<string>();
    for (const r of this.p.source.ring.read()) {
      if (!("flow" in r)) continue;
      for (const ns of [r.flow.source?.namespace, r.flow.destination?.namespace])
        if (ns !== undefined && ns !== "") seen.add(ns);
    }
    return [...seen].sort().map((namespace) => ({ namespace }));
  }

  /**
   * A record's GetFlowsResponse bytes, written once however many streams send it (encode.ts;
   * the reflective protojson path for what that writer does not handle).
   */
  private encode(r: FlowRecord): Uint8Array | undefined {
    const cached = this.encoded.get(r);
    if (cached !== undefined) return cached;
    try {
      const d = hubbleSchema().GetFlowsResponse;
      if (this.p.reflectiveEncoding === true) return toBinary(d, this.msg(d, hubbleRecord(r)));
      const b = encodeRecord(r) ?? toBinary(d, this.msg(d, hubbleRecord(r)));
      this.encoded.set(r, b);
      return b;
    } catch (e) {
      this.p.onError?.(e as Error);
      return undefined;
    }
  }

  private async getFlows(call: ServerWritableStream<Message, Uint8Array>): Promise<void> {
    batchWrites(call); // messages written in batches, not one per turn of the event loop
    let req: HubbleFlowsRequest;
    try {
      req = observeRequestOf(call.request);
    } catch (e) {
      call.emit("error", { code: status.INVALID_ARGUMENT, details: (e as Error).message });
      return;
    }
    const ac = new AbortController();
    call.on("cancelled", () => ac.abort());
    call.on("close", () => ac.abort());
    const aborted = once(ac.signal, "abort").catch(() => undefined);
    const send = async (r: FlowRecord): Promise<boolean> => {
      if (call.cancelled || ac.signal.aborted) return false;
      const m = this.encode(r);
      // grpc-js queues 16 messages before write() says "wait": a deeper queue (bounded) keeps the
      // stream busy between two wake-ups of a loaded machine (see MAX_QUEUED).
      if (m !== undefined && !call.write(m) && call.writableLength >= MAX_QUEUED)
        await Promise.race([once(call, "drain"), aborted]).catch(() => undefined);
      return !ac.signal.aborted;
    };
    try {
      const ring = this.p.source.ring;
      const filter = compileFilter(req.filter);
      const window = {
        filter,
        ...(req.since !== undefined ? { since: req.since } : {}),
        ...(req.until !== undefined ? { until: req.until } : {}),
      };
      if (!req.follow) {
        const all = req.first
          ? ring.read(window)
          : ring.read({ ...window, ...(req.number ? { number: req.number } : {}) });
        const recs = req.first && req.number !== undefined ? all.slice(0, req.number) : all;
        for (const r of recs) if (!(await send(r))) return;
        call.end();
        return;
      }
      // The relay reopening a node's stream from the last time it saw (RESUME_METADATA): the ring
      // counts what it overwrote since then, so the break loses nothing uncounted.
      const resumed = req.since !== undefined && call.metadata.get(RESUME_METADATA).length > 0;
      const live = {
        ...window,
        signal: ac.signal,
        ...(req.number ? { number: req.number } : {}),
        ...(resumed ? { resumed } : {}),
      };
      for await (const r of ring.follow(live)) {
        if (req.until !== undefined && Date.parse(r.time) > req.until) break;
        if (!(await send(r))) break;
      }
      if (!ac.signal.aborted) call.end();
    } catch (e) {
      if (!ac.signal.aborted) call.emit("error", { code: status.INTERNAL, details: (e as Error).message });
    }
  }

  async start(): Promise<void> {
    this.bound = await bindListeners(this.server, this.p, failServe);
  }

  async stop(): Promise<void> {
    // Followers never end by themselves: close their streams rather than wait for them.
    closeListeners(this.server, this.bound);
    this.bound = [];
  }
}
