/**
 * Hubble's L7 metric handlers:
 *
 *   dns     hubble_dns_queries_total{rcode,qtypes,ips_returned[,query]}
 *           hubble_dns_responses_total{rcode,qtypes,ips_returned[,query]}
 *           hubble_dns_response_types_total{type,qtypes[,query]}
 *   httpV2  hubble_http_requests_total{method,protocol,status,reporter}, hubble_http_request_duration_seconds{method,reporter}
 *   http    hubble_http_requests_total{method,protocol,reporter}, hubble_http_responses_total{…,status,…}, duration
 *   kafka   hubble_kafka_requests_total{topic,api_key,error_code,reporter}, hubble_kafka_request_duration_seconds{topic,api_key,reporter}
 *
 * As Hubble, the context labels come first on these metrics; HTTP metrics are
 * counted from RESPONSE records with the context sides swapped back (a
 * response goes from the server to the client).
 *
 * Our proxies report a request with its answer in one record: a forwarded DNS
 * query is one RESPONSE record (is_reply) where Hubble sees a query and a
 * response record, so a reply counts one query (rcode "", no IPs, as Hubble's
 * query record) and one response; likewise http (v1) counts a request for
 * each response. A request the proxy denied is a REQUEST record (DNS: a query
 * with rcode "Policy denied"; HTTP: not counted, as Hubble).
 */
import type { Flow } from "./flow.js";
import type { MetricFactory, MetricHandler } from "./metric-handlers.js";
import type { MetricHandlerSpec } from "./metrics-config.js";
import type { MetricContext } from "./metrics-context.js";

const DNS_RCODES: Readonly<Record<number, string>> = {
  0: "No Error",
  1: "Format Error",
  2: "Server Failure",
  3: "Non-Existent Domain",
  4: "Not Implemented",
  5: "Query Refused",
  6: "Name Exists when it should not",
  7: "RR Set Exists when it should not",
  8: "RR Set that should exist does not",
  9: "Not Authorized",
  10: "Name not contained in zone",
  11: "DSO-TYPE Not Implemented",
  16: "Bad OPT Version",
  17: "Key not recognized",
  18: "Signature out of time window",
  19: "Bad TKEY Mode",
  20: "Duplicate key name",
  21: "Algorithm not supported",
  22: "Bad Truncation",
  23: "Bad/missing Server Cookie",
};

const DNS_HELP = "Number of DNS queries observed";

function reporter(f: Flow): string {
  return f.traffic_direction === "EGRESS"
    ? "client"
    : f.traffic_direction === "INGRESS"
      ? "server"
      : "unknown";
}

/** A histogram's label object, the context labels first (as the label names). */
function contextLabels(names: readonly string[], values: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {};
  names.forEach((n, i) => (labels[n] = values[i] ?? ""));
  return labels;
}

function dnsHandler(m: MetricFactory, ctx: MetricContext, spec: MetricHandlerSpec): MetricHandler {
  const withQuery = spec.options.has("query");
  const ignoreAAAA = spec.options.has("ignoreaaaa");
  const names = ctx.names();
  const q = withQuery ? ["query"] : [];
  const queries = m.tally("hubble_dns_queries_total", DNS_HELP, [
    ...names,
    "rcode",
    "qtypes",
    "ips_returned",
    ...q,
  ]);
  const responses = m.tally("hubble_dns_responses_total", DNS_HELP, [
    ...names,
    "rcode",
    "qtypes",
    "ips_returned",
    ...q,
  ]);
  const types = m.tally("hubble_dns_response_types_total", DNS_HELP, [...names, "type", "qtypes", ...q]);
  return {
    observe(f) {
      const dns = f.l7?.dns;
      if (dns === undefined) return;
      const qtypes = dns.qtypes ?? [];
      if (ignoreAAAA && qtypes.length === 1 && qtypes[0] === "AAAA") return;
      const c = ctx.values(f);
      const qt = qtypes.join(",");
      const query = withQuery ? [dns.query] : [];
      if (f.verdict === "DROPPED") {
        queries.inc([...c, "Policy denied", qt, String(dns.ips?.length ?? 0), ...query]);
        return;
      }
      if (f.is_reply !== true) {
        queries.inc([...c, "", qt, String(dns.ips?.length ?? 0), ...query]);
        return;
      }
      queries.inc([...c, "", qt, "0", ...query]); // the query this answer answers (see above)
      const rcode = DNS_RCODES[dns.rcode ?? 0] ?? "";
      responses.inc([...c, rcode, qt, String(dns.ips?.length ?? 0), ...query]);
      for (const rr of dns.rrtypes ?? []) types.inc([...c, rr, qt, ...query]);
    },
  };
}

function httpHandler(m: MetricFactory, ctx: MetricContext, v2: boolean): MetricHandler {
  const names = ctx.names();
  const requests = m.tally(
    "hubble_http_requests_total",
    "Count of HTTP requests",
    v2
      ? [...names, "method", "protocol", "status", "reporter"]
      : [...names, "method", "protocol", "reporter"],
  );
  const responses = v2
    ? undefined
    : m.tally("hubble_http_responses_total", "Count of HTTP responses", [
        ...names,
        "method",
        "protocol",
        "status",
        "reporter",
      ]);
  const duration = m.histogram(
    "hubble_http_request_duration_seconds",
    "Quantiles of HTTP request duration in seconds",
    [...names, "method", "reporter"],
  );
  return {
    observe(f) {
      const http = f.l7?.http;
      if (http === undefined || f.l7?.type !== "RESPONSE") return;
      const c = ctx.values(f, v2); // v1 keeps the record's own sides, as Hubble's http handler
      const method = http.method ?? "";
      const proto = http.protocol ?? "";
      const status = String(http.code ?? 0);
      const rep = reporter(f);
      if (responses === undefined) requests.inc([...c, method, proto, status, rep]);
      else {
        requests.inc([...c, method, proto, rep]);
        responses.inc([...c, method, proto, status, rep]);
      }
      const labels = contextLabels(names, c);
      labels["method"] = method;
      labels["reporter"] = rep;
      duration.observe(labels, (f.l7.latency_ns ?? 0) / 1e9);
    },
  };
}

function kafkaHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const names = ctx.names();
  const requests = m.tally("hubble_kafka_requests_total", "Count of Kafka requests", [
    ...names,
    "topic",
    "api_key",
    "error_code",
    "reporter",
  ]);
  const duration = m.histogram(
    "hubble_kafka_request_duration_seconds",
    "Quantiles of Kafka request duration in seconds",
    [...names, "topic", "api_key", "reporter"],
  );
  return {
    observe(f) {
      const kafka = f.l7?.kafka;
      if (kafka === undefined || f.l7?.type !== "REQUEST") return;
      const c = ctx.values(f);
      const topic = kafka.topic ?? "";
      const apiKey = kafka.api_key ?? "";
      const rep = reporter(f);
      requests.inc([...c, topic, apiKey, String(kafka.error_code ?? 0), rep]);
      const labels = contextLabels(names, c);
      labels["topic"] = topic;
      labels["api_key"] = apiKey;
      labels["reporter"] = rep;
      duration.observe(labels, (f.l7.latency_ns ?? 0) / 1e9);
    },
  };
}

type Build = (m: MetricFactory, ctx: MetricContext, spec: MetricHandlerSpec) => MetricHandler;

/** The L7 handlers by name. */
export const L7_HANDLERS: Readonly<Record<string, Build>> = {
  dns: dnsHandler,
  http: (m, ctx) => httpHandler(m, ctx, false),
  httpV2: (m, ctx) => httpHandler(m, ctx, true),
  kafka: kafkaHandler,
};
