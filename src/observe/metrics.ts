/**
 * Prometheus metrics: Hubble's flow metrics and the agent's own, on an
 * explicit prom-client Registry (never the global one), served over HTTP.
 *
 *   Flow --FlowMetrics.observeFlow--> every enabled Hubble handler (metric-handlers*.ts):
 *                                     flow, drop, policy, port-distribution, tcp, icmp,
 *                                     flows-to-world, dns, http | httpV2, kafka
 *   agent --setX()/observeX()-------> membrane_endpoints, membrane_identities, membrane_policy_revision,
 *                                     membrane_policy_apply_to_enforced_seconds, membrane_nft_transaction_duration_seconds
 *   loss --lostEvents---------------> hubble_lost_events_total{source} (Hubble's lower-case source names)
 *   serveMetrics({host, port, registry}) --> GET /metrics (text format 0.0.4)
 *
 * Which handlers run, and their context labels, come from `--hubble-metrics`
 * (metrics-config.ts); without it every handler runs without options.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { MembraneError } from "../errors.js";
import type { Flow, LostEventSource } from "./flow.js";
import { L4_HANDLERS, type MetricFactory, type MetricHandler } from "./metric-handlers.js";
import { L7_HANDLERS } from "./metric-handlers-l7.js";
import { defaultMetricsList, type MetricHandlerSpec } from "./metrics-config.js";
import { MetricContext } from "./metrics-context.js";
import { Tally } from "./metrics-tally.js";

export interface FlowMetricsParams {
  /** Registry to register on; a new one when absent. */
  registry?: Registry;
  /** The Hubble handlers to run (parseMetricsList); default: every handler, no options. */
  handlers?: readonly MetricHandlerSpec[];
}

export class FlowMetrics {
  readonly registry: Registry;
  /** The handlers that run, with their options (for the agent's log). */
  readonly handlers: readonly MetricHandlerSpec[];
  private readonly running: MetricHandler[] = [];
  private readonly lost: Counter<"source">;
  private readonly endpoints: Gauge;
  private readonly identities: Gauge;
  private readonly revision: Gauge;
  private readonly applyToEnforced: Histogram;
  private readonly nftTx: Histogram;

  constructor(params: FlowMetricsParams = {}) {
    const r = params.registry ?? new Registry();
    this.registry = r;
    const registers = [r];
    const tallies: Tally[] = [];
    // Each tallied counter flushes every tally at collect time (one scrape = one flush).
    const flushAll = (): void => tallies.forEach((t) => t.flush());
    const factory: MetricFactory = {
      tally: (name, help, labelNames) => {
        const t = new Tally(
          new Counter({ name, help, labelNames: [...labelNames], registers, collect: flushAll }),
          labelNames,
        );
        tallies.push(t);
        return t;
      },
      // Prometheus' default buckets, as Hubble's histograms.
      histogram: (name, help, labelNames) =>
        new Histogram({ name, help, labelNames: [...labelNames], registers }),
    };
    this.handlers = params.handlers ?? defaultMetricsList();
    for (const spec of this.handlers) {
      const build = L4_HANDLERS[spec.name] ?? L7_HANDLERS[spec.name];
      if (build !== undefined) this.running.push(build(factory, new MetricContext(spec.context), spec));
    }
    this.lost = new Counter({
      name: "hubble_lost_events_total",
      help: "Number of lost events",
      labelNames: ["source"],
      registers,
    });
    this.endpoints = new Gauge({
      name: "membrane_endpoints",
      help: "Endpoints managed by the agent",
      registers,
    });
    this.identities = new Gauge({
      name: "membrane_identities",
      help: "Security identities allocated",
      registers,
    });
    this.revision = new Gauge({
      name: "membrane_policy_revision",
      help: "Policy revision enforced",
      registers,
    });
    this.applyToEnforced = new Histogram({
      name: "membrane_policy_apply_to_enforced_seconds",
      help: "Time from a policy change being accepted to the kernel enforcing it",
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.nftTx = new Histogram({
      name: "membrane_nft_transaction_duration_seconds",
      help: "Duration of nftables transactions",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
  }

  /** Counts one flow in every enabled Hubble handler. */
  observeFlow(f: Flow): void {
    for (const h of this.running) h.observe(f);
  }

  /** Events lost before the ring; Hubble labels them with the lower-case source name. */
  lostEvents(source: LostEventSource, n: number): void {
    if (n > 0) this.lost.inc({ source: source.toLowerCase() }, n);
  }

  setEndpoints(n: number): void {
    this.endpoints.set(n);
  }
  setIdentities(n: number): void {
    this.identities.set(n);
  }
  setPolicyRevision(n: number): void {
    this.revision.set(n);
  }
  observeApplyToEnforced(seconds: number): void {
    this.applyToEnforced.observe(seconds);
  }
  observeNftTransaction(seconds: number): void {
    this.nftTx.observe(seconds);
  }
}

export interface MetricsServer {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` from `registry` on host:port (port 0 = any free port).
 * Only GET and HEAD of /metrics answer; no CORS headers, so browsers on other
 * origins cannot read it.
 */
export function serveMetrics(params: {
  host: string;
  port: number;
  registry: Registry;
}): Promise<MetricsServer> {
  const { registry } = params;
  const server: Server = createServer((req, res) => {
    res.setHeader("X-Content-Type-Options", "nosniff");
    res.setHeader("Cache-Control", "no-store");
    const path = (req.url ?? "").split("?")[0];
    if (path !== "/metrics") {
      res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" }).end("not found; try /metrics\n");
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res
        .writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" })
        .end("method not allowed\n");
      return;
    }
    registry.metrics().then(
      (text) => {
        res.writeHead(200, { "Content-Type": registry.contentType });
        res.end(req.method === "HEAD" ? undefined : text);
      },
      (e: unknown) => {
        res
          .writeHead(500, { "Content-Type": "text/plain; charset=utf-8" })
          .end(`metrics failed: ${String(e)}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e) =>
      reject(
        new MembraneError(
          "METRICS_SERVE_FAILED",
          `Cannot serve metrics on ${params.host}:${params.port}: ${e.message}`,
          {
            hint: "Choose a free address for `membrane agent --metrics-address`.",
            cause: e,
          },
        ),
      ),
    );
    server.listen(params.port, params.host, () => {
      const a = server.address() as AddressInfo;
      resolve({
        host: a.address,
        port: a.port,
        close: () => new Promise((done) => server.close(() => done())),
      });
    });
  });
}
