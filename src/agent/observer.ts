/**
 * Flow visibility on the node: wiring of src/observe into the agent.
 *
 *   kernel NFLOG (node netns) --NflogReader--> FlowEnricher (agent's lookup)
 *        (+ a drop event beside each denying policy verdict, drop-event.ts)
 *        --> FlowRing (bounded, counts losses) --> API: GET flows / follow
 *        --> FlowMetrics (/metrics)            --> FlowExporter (JSON lines, rotated)
 *   proxy L7 events --pushL7 (l7Flow)--> the same ring, metrics and export
 */
import type { Logger } from "pino";
import {
  compileFilter,
  FlowEnricher,
  FlowExporter,
  FlowMetrics,
  FlowRing,
  NflogReader,
  serveMetrics,
  type FlowFilterSet,
  type FlowLookup,
  type FlowRecord,
  type MetricHandlerSpec,
  type MetricsServer,
  type ObserveRequest,
} from "../observe/index.js";
import { dropEventOf } from "../observe/drop-event.js";
import { l7Flow, type L7Addrs } from "../observe/l7flow.js";
import type { L7Event } from "../proxy/types.js";
import type { AgentParams } from "./agent-params.js";

export interface ObserverParams {
  readonly netns?: string;
  readonly group: number;
  readonly lookup: FlowLookup;
  readonly nodeName: string;
  /** Hubble's node_labels on every flow (`key=value`, sorted: the agent's --node-labels). */
  readonly nodeLabels?: readonly string[];
  readonly ringCapacity: number;
  readonly logger: Logger;
  /** host:port for /metrics; absent = no metrics server. */
  readonly metricsAddress?: string;
  /** Hubble metric handlers (--hubble-metrics, parsed); absent = every handler without options. */
  readonly hubbleMetrics?: readonly MetricHandlerSpec[];
  readonly export?: {
    readonly path: string;
    readonly maxSizeBytes: number;
    readonly maxBackups: number;
    readonly filter?: FlowFilterSet;
  };
}

export class Observer {
  readonly ring: FlowRing;
  readonly metrics: FlowMetrics;
  private readonly enricher: FlowEnricher;
  private reader: NflogReader | undefined;
  private server: MetricsServer | undefined;
  private exporter: FlowExporter | undefined;

  constructor(private readonly p: ObserverParams) {
    this.metrics = new FlowMetrics(p.hubbleMetrics !== undefined ? { handlers: p.hubbleMetrics } : {});
    this.ring = new FlowRing({ capacity: p.ringCapacity, nodeName: p.nodeName });
    this.enricher = new FlowEnricher({
      lookup: p.lookup,
      nodeName: p.nodeName,
      ...(p.nodeLabels !== undefined ? { nodeLabels: p.nodeLabels } : {}),
    });
  }

  async start(): Promise<void> {
    if (this.p.export) {
      this.exporter = new FlowExporter({
        path: this.p.export.path,
        maxSizeBytes: this.p.export.maxSizeBytes,
        maxBackups: this.p.export.maxBackups,
        ...(this.p.export.filter ? { filter: this.p.export.filter } : {}),
        onError: (e) => this.p.logger.error({ err: e.message }, "flow export failed"),
      });
      this.exporter.start();
    }
    this.reader = new NflogReader({
      ...(this.p.netns !== undefined ? { netns: this.p.netns } : {}),
      group: this.p.group,
      onEvent: (ev) => {
        const flow = this.enricher.enrich(ev);
        if (!flow) return;
        this.ring.pushFlow(flow, ev.timestampMs);
        this.metrics.observeFlow(flow);
        this.exporter?.write({ flow, node_name: this.p.nodeName, time: flow.time });
        // As Hubble: a policy denial is a policy verdict and a drop event (metrics count it once).
        const drop = dropEventOf(flow);
        if (drop !== undefined) {
          this.ring.pushFlow(drop, ev.timestampMs);
          this.exporter?.write({ flow: drop, node_name: this.p.nodeName, time: drop.time });
        }
      },
      onLost: (n) => {
        this.ring.pushLost("PERF_EVENT_RING_BUFFER", n);
        this.metrics.lostEvents("PERF_EVENT_RING_BUFFER", n);
      },
      onError: (e) => this.p.logger.error({ err: e.message }, "NFLOG reader failed"),
    });
    await this.reader.start();
    if (this.p.metricsAddress) {
      const i = this.p.metricsAddress.lastIndexOf(":");
      this.server = await serveMetrics({
        host: this.p.metricsAddress.slice(0, i) || "127.0.0.1",
        port: Number(this.p.metricsAddress.slice(i + 1)),
        registry: this.metrics.registry,
      });
      const handlers = this.metrics.handlers.map((h) => h.name);
      this.p.logger.info(
        { address: `${this.server.host}:${this.server.port}`, handlers },
        "metrics listening",
      );
    }
  }

  /** A flow for one of the proxy's L7 events. */
  pushL7(event: L7Event, addrs: L7Addrs): void {
    const flow = l7Flow(event, addrs, this.p.lookup, this.p.nodeName, this.p.nodeLabels);
    this.ring.pushFlow(flow);
    this.metrics.observeFlow(flow);
    this.exporter?.write({ flow, node_name: this.p.nodeName, time: flow.time });
  }

  /** Where /metrics is served (host:port), once started. */
  get metricsAddress(): string | undefined {
    return this.server ? `${this.server.host}:${this.server.port}` : undefined;
  }

  async stop(): Promise<void> {
    await this.reader?.stop().catch(() => undefined);
    await this.server?.close().catch(() => undefined);
    this.exporter?.close();
  }

  /** The flows a request selects, from the ring. */
  read(req: ObserveRequest): FlowRecord[] {
    const filter = compileFilter(req.filter);
    return this.ring.read({
      filter,
      ...(req.number !== undefined ? { number: req.number } : {}),
      ...(req.since !== undefined ? { since: req.since } : {}),
      ...(req.until !== undefined ? { until: req.until } : {}),
    });
  }

  follow(req: ObserveRequest, signal: AbortSignal): AsyncGenerator<FlowRecord> {
    return this.ring.follow({
      filter: compileFilter(req.filter),
      ...(req.number !== undefined ? { number: req.number } : {}),
      ...(req.since !== undefined ? { since: req.since } : {}),
      signal,
    });
  }
}

/** The agent's observer from `membrane agent`'s flow options (`observe`) and the node's facts. */
export function agentObserver(
  p: Pick<AgentParams, "nodeNetns" | "logGroup" | "logger" | "engine">,
  o: NonNullable<AgentParams["observe"]>,
  lookup: FlowLookup,
): Observer {
  return new Observer({
    ...(p.nodeNetns !== undefined ? { netns: p.nodeNetns } : {}),
    group: p.logGroup,
    lookup,
    nodeName: o.nodeName,
    nodeLabels: Object.entries(p.engine.nodeLabels ?? {}).map(([k, v]) => `${k}=${v}`).sort(), // prettier-ignore
    ringCapacity: o.ringCapacity,
    logger: p.logger,
    ...(o.metricsAddress ? { metricsAddress: o.metricsAddress } : {}),
    ...(o.hubbleMetrics ? { hubbleMetrics: o.hubbleMetrics } : {}),
    ...(o.export ? { export: o.export } : {}),
  });
}
