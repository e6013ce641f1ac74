/**
 * Prometheus metrics: Hubble's flow metrics and the agent's own, on an
 * explicit prom-client Registry (never the global one), served over HTTP.
 *
 *   Flow --FlowMetrics.observeFlow--> hubble_flows_processed_total, hubble_drop_total,
 *                                     hubble_policy_verdicts_total, hubble_port_distribution_total
 *   agent --setX()/observeX()-------> membrane_endpoints, membrane_identities, membrane_policy_revision,
 *                                     membrane_policy_apply_to_enforced_seconds, membrane_nft_transaction_duration_seconds
 *   loss --lostEvents---------------> hubble_lost_events_total
 *   serveMetrics({host, port, registry}) --> GET /metrics (text format 0.0.4)
 *
 * Label sets are Hubble's: flows {type, subtype, verdict, protocol}; drops
 * {reason, protocol}; policy verdicts {direction, match, action}; ports
 * {protocol, port}; lost events {source}.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import { MembraneError } from "../errors.js";
import {
  EVENT_TYPE,
  l4Ports,
  l4Protocol,
  POLICY_MATCH,
  VERDICTS,
  type Flow,
  type LostEventSource,
} from "./flow.js";

export interface FlowMetricsParams {
  /** Registry to register on; a new one when absent. */
  registry?: Registry;
}

const TYPE_NAMES: Readonly<Record<number, string>> = {
  [EVENT_TYPE.drop]: "Drop",
  [EVENT_TYPE.trace]: "Trace",
  [EVENT_TYPE.policyVerdict]: "PolicyVerdict",
  [EVENT_TYPE.l7]: "L7",
};
const MATCH_NAMES = new Map<number, string>(
  Object.entries(POLICY_MATCH).map(([k, v]) => [v, k.toLowerCase()]),
);

/**
 * Per-flow counting without prom-client's per-call label hashing: counts live
 * in a Map keyed by the joined label values and reach the Counter when it is
 * collected (at scrape time).
 */
const DNS_RCODES: Readonly<Record<number, string>> = {
  0: "No Error",
  1: "Format Error",
  2: "Server Failure",
  3: "Non-Existent Domain",
  4: "Not Implemented",
  5: "Query Refused",
};

type Leaf<L extends string> = { labels: Record<L, string>; n: number; reported: number };
type Level = Map<string | number, unknown>;

/**
 * Counts by label values in nested maps, one level per label (the values are the flow's own
 * strings and numbers: no key is built per flow); the Counter is told at collect time.
 */
class Tally<L extends string> {
  private readonly root: Level = new Map();
  constructor(
    private readonly counter: Counter<L>,
    private readonly names: readonly L[],
  ) {}
  /** One event with these label values, in labelNames order (unused trailing ones: ""). */
  inc(a: string | number, b: string | number, c: string | number = "", d: string | number = ""): void {
    let m = this.root;
    const last = this.names.length - 1;
    for (let i = 0; i < last; i++) {
      const key = i === 0 ? a : i === 1 ? b : c;
      let next = m.get(key) as Level | undefined;
      if (next === undefined) m.set(key, (next = new Map()));
      m = next;
    }
    const key = last === 0 ? a : last === 1 ? b : last === 2 ? c : d;
    const e = m.get(key) as Leaf<L> | undefined;
    if (e !== undefined) {
      e.n++;
      return;
    }
    const labels = {} as Record<L, string>;
    const k = [a, b, c, d];
    this.names.forEach((n, i) => (labels[n] = String(k[i])));
    m.set(key, { labels, n: 1, reported: 0 });
  }
  flush(): void {
    const walk = (m: Level, depth: number): void => {
      for (const v of m.values()) {
        if (depth > 0) walk(v as Level, depth - 1);
        else {
          const e = v as Leaf<L>;
          if (e.n > e.reported) this.counter.inc(e.labels, e.n - e.reported);
          e.reported = e.n;
        }
      }
    };
    walk(this.root, this.names.length - 1);
  }
}

const LOWER: Readonly<Record<string, string>> = Object.fromEntries(
  [...VERDICTS, "INGRESS", "EGRESS", "TRAFFIC_DIRECTION_UNKNOWN"].map((v) => [v, v.toLowerCase()]),
);

export class FlowMetrics {
  readonly registry: Registry;
  private readonly flows: Tally<"type" | "subtype" | "verdict" | "protocol">;
  private readonly drops: Tally<"reason" | "protocol">;
  private readonly verdicts: Tally<"direction" | "match" | "action">;
  private readonly ports: Tally<"protocol" | "port">;
  private readonly httpRequests: Tally<"method" | "protocol" | "status" | "reporter">;
  private readonly httpDuration: Histogram<"method" | "reporter">;
  private readonly dnsQueries: Tally<"rcode" | "qtypes" | "ips_returned">;
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
    const tallies: Tally<string>[] = [];
    // Each tallied counter flushes every tally at collect time (one scrape = one flush).
    const flushAll = (): void => tallies.forEach((t) => t.flush());
    const tally = <L extends string>(cfg: { name: string; help: string; labelNames: L[] }): Tally<L> => {
      const t = new Tally<L>(new Counter<L>({ ...cfg, registers, collect: flushAll }), cfg.labelNames);
      tallies.push(t as unknown as Tally<string>);
      return t;
    };
    this.flows = tally({
      name: "hubble_flows_processed_total",
      help: "Total number of flows processed",
      labelNames: ["type", "subtype", "verdict", "protocol"],
    });
    this.drops = tally({
      name: "hubble_drop_total",
      help: "Number of drops",
      labelNames: ["reason", "protocol"],
    });
    this.verdicts = tally({
      name: "hubble_policy_verdicts_total",
      help: "Number of policy verdict events",
      labelNames: ["direction", "match", "action"],
    });
    this.ports = tally({
      name: "hubble_port_distribution_total",
      help: "Numbers of packets distributed by destination port",
      labelNames: ["protocol", "port"],
    });
    // Hubble's httpV2 and dns handlers (one record per request here: the proxy reports the
    // request with its response, so a request is counted once, with its status).
    this.httpRequests = tally({
      name: "hubble_http_requests_total",
      help: "Count of HTTP requests",
      labelNames: ["method", "protocol", "status", "reporter"],
    });
    this.httpDuration = new Histogram({
      name: "hubble_http_request_duration_seconds",
      help: "Quantiles of HTTP request duration in seconds",
      labelNames: ["method", "reporter"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.dnsQueries = tally({
      name: "hubble_dns_responses_total",
      help: "Number of DNS responses",
      labelNames: ["rcode", "qtypes", "ips_returned"],
    });
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

  /** Counts one flow in every Hubble metric it belongs to. */
  observeFlow(f: Flow): void {
    const protocol = l4Protocol(f.l4) ?? (f.l7?.http ? "HTTP" : f.l7?.dns ? "DNS" : "");
    const et = f.event_type.type;
    const type = TYPE_NAMES[et] ?? String(et);
    const subtype = et === EVENT_TYPE.l7 ? (f.l7?.http ? "HTTP" : f.l7?.dns ? "DNS" : "") : "";
    const verdict = f.verdict;
    this.flows.inc(type, subtype, verdict, protocol);
    if (verdict === "DROPPED") {
      const reason = f.drop_reason_desc ?? "DROP_REASON_UNKNOWN";
      this.drops.inc(reason, protocol);
    }
    if (et === EVENT_TYPE.policyVerdict) {
      const direction = LOWER[f.traffic_direction] ?? f.traffic_direction.toLowerCase();
      const match = MATCH_NAMES.get(f.policy_match_type ?? 0) ?? "none";
      const action = LOWER[verdict] ?? verdict.toLowerCase();
      this.verdicts.inc(direction, match, action);
    }
    const http = f.l7?.http;
    if (http !== undefined) {
      const method = http.method ?? "";
      const status = http.code === undefined ? "" : String(http.code);
      const reporter = f.traffic_direction === "INGRESS" ? "server" : "client";
      const proto = http.protocol ?? "";
      this.httpRequests.inc(method, proto, status, reporter);
      if (f.l7?.latency_ns !== undefined)
        this.httpDuration.observe({ method, reporter }, f.l7.latency_ns / 1e9);
    }
    const dns = f.l7?.dns;
    if (dns !== undefined && dns.rcode !== undefined) {
      const rcode = DNS_RCODES[dns.rcode] ?? String(dns.rcode);
      const qtypes = (dns.qtypes ?? []).join(",");
      const ips = String(dns.ips?.length ?? 0);
      this.dnsQueries.inc(rcode, qtypes, ips);
    }
    const ports = l4Ports(f.l4);
    if (ports !== undefined && f.is_reply !== true) {
      const port = ports.destination_port;
      this.ports.inc(protocol, port);
    }
  }

  lostEvents(source: LostEventSource, n: number): void {
    if (n > 0) this.lost.inc({ source }, n);
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
