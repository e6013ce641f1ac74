/**
 * Hubble's metric handlers, fed flow records, read back from the exposition:
 * tcp, icmp, flows-to-world (any-drop, port, syn-only), kafka, dns (queries,
 * responses, response types, query, ignoreAAAA), http/httpV2, L7 protocol
 * names, port distribution of forwarded requests only; and the context
 * options (sourceContext/destinationContext with their identifiers and
 * Egress/Ingress variants, labelsContext) on every handler. Label names and
 * values are Hubble's (cilium pkg/hubble/metrics); promtool checks a scrape
 * with every handler and every context label.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { describe, test } from "node:test";
import type { Flow, Layer4 } from "../../src/observe/flow.js";
import { FlowMetrics } from "../../src/observe/metrics.js";
import { METRIC_HANDLERS, parseMetricsList } from "../../src/observe/metrics-config.js";

const web = {
  ID: 12,
  identity: 300,
  namespace: "shop",
  pod_name: "web-7d9f8b6c5d-x2x4k",
  labels: ["k8s:app.kubernetes.io/name=webshop", "k8s:io.kubernetes.pod.namespace=shop"],
  workloads: [{ name: "web", kind: "Deployment" }],
};
const db = {
  ID: 13,
  identity: 301,
  namespace: "data",
  pod_name: "db-0",
  labels: ["k8s:app=postgres", "k8s:io.kubernetes.pod.namespace=data"],
};
const world = { identity: 2, labels: ["reserved:world"] };

/** A forwarded TCP SYN web -> db:5432 at egress, overridden by `o`. */
function flow(o: Partial<Flow> = {}): Flow {
  return {
    time: "2026-01-01T00:00:00.000Z",
    verdict: "FORWARDED",
    IP: { source: "10.1.0.5", destination: "10.1.0.9", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 40000, destination_port: 5432, flags: { SYN: true } } },
    source: web,
    destination: db,
    Type: "L3_L4",
    event_type: { type: 4, sub_type: 0 },
    traffic_direction: "EGRESS",
    is_reply: false,
    ...o,
  };
}
/** `f` without the field `k` (exactOptionalPropertyTypes: an absent field is not an undefined one). */
function omit(f: Flow, k: "l4" | "is_reply"): Flow {
  const out = { ...f };
  delete out[k];
  return out;
}
const tcp = (flags: Record<string, boolean>, port = 5432): Layer4 => ({
  TCP: { source_port: 40000, destination_port: port, flags },
});

async function scrape(spec: string | undefined, flows: readonly Flow[]): Promise<string[]> {
  const m = new FlowMetrics(spec === undefined ? {} : { handlers: parseMetricsList([spec]) });
  for (const f of flows) m.observeFlow(f);
  return (await m.registry.metrics()).split("\n");
}

function has(lines: readonly string[], ...want: string[]): void {
  for (const w of want)
    assert.ok(lines.includes(w), `missing: ${w}\n${lines.filter((l) => !l.startsWith("#")).join("\n")}`);
}
function hasNo(lines: readonly string[], prefix: string): void {
  const hit = lines.find((l) => l.startsWith(prefix));
  assert.equal(hit, undefined, `unexpected: ${hit}`);
}

const toWorld = [
  flow({ destination: world, l4: tcp({ SYN: true }, 443) }),
  flow({ destination: world, l4: tcp({ ACK: true }, 443) }),
  flow({ destination: world, l4: tcp({ SYN: true, ACK: true }, 443), is_reply: true }),
  flow({
    destination: world,
    verdict: "DROPPED",
    drop_reason_desc: "POLICY_DENIED",
    l4: tcp({ SYN: true }, 22),
  }),
  flow({
    destination: world,
    verdict: "DROPPED",
    drop_reason_desc: "INVALID_SOURCE_IP",
    l4: tcp({ SYN: true }, 25),
  }),
  flow({ destination: world, l4: { UDP: { source_port: 5000, destination_port: 53 } } }),
  flow({ l4: tcp({ SYN: true }, 443) }), // to a pod
];

const dnsFlow = (o: Partial<NonNullable<NonNullable<Flow["l7"]>["dns"]>>, f: Partial<Flow> = {}): Flow =>
  flow({
    Type: "L7",
    event_type: { type: 129 },
    l4: { UDP: { source_port: 53, destination_port: 40000 } },
    l7: { type: "RESPONSE", dns: { query: "api.example.com.", qtypes: ["A"], ...o } },
    is_reply: true,
    ...f,
  });
const dnsFlows = [
  dnsFlow({ rcode: 0, ips: ["1.2.3.4", "1.2.3.5"], rrtypes: ["CNAME", "A", "A"] }),
  dnsFlow({ rcode: 3, qtypes: ["AAAA"] }),
  dnsFlow(
    {},
    {
      verdict: "DROPPED",
      is_reply: false,
      l7: { type: "REQUEST", dns: { query: "evil.test.", qtypes: ["A"] } },
    },
  ),
];

const httpResp = flow({
  Type: "L7",
  event_type: { type: 129 },
  source: db,
  destination: web,
  IP: { source: "10.1.0.9", destination: "10.1.0.5", ipVersion: "IPv4" },
  l4: { TCP: { source_port: 80, destination_port: 40000 } },
  l7: {
    type: "RESPONSE",
    latency_ns: 20_000_000,
    http: { code: 200, method: "GET", url: "/", protocol: "HTTP/1.1" },
  },
  is_reply: true,
});

const httpDenied = flow({
  Type: "L7",
  event_type: { type: 129 },
  verdict: "DROPPED",
  l7: { type: "REQUEST", http: { code: 403, method: "PUT", url: "/", protocol: "HTTP/1.1" } },
});

describe("hubble metric handlers", () => {
  test("tcp: SYN, SYN-ACK, FIN, RST of forwarded TCP by family; drops are not counted", async () => {
    const v6 = { source: "fd00::5", destination: "fd00::9", ipVersion: "IPv6" as const };
    const lines = await scrape("tcp", [
      flow(),
      flow({ l4: tcp({ SYN: true, ACK: true }), is_reply: true }),
      flow({ l4: tcp({ FIN: true, ACK: true }) }),
      flow({ l4: tcp({ RST: true, FIN: true }), IP: v6 }),
      flow({ verdict: "DROPPED", l4: tcp({ SYN: true }) }),
      flow({ verdict: "REDIRECTED", l4: tcp({ SYN: true }) }),
      flow({ l4: { UDP: { source_port: 1, destination_port: 53 } } }),
    ]);
    has(
      lines,
      'hubble_tcp_flags_total{flag="SYN",family="IPv4"} 2',
      'hubble_tcp_flags_total{flag="SYN-ACK",family="IPv4"} 1',
      'hubble_tcp_flags_total{flag="FIN",family="IPv4"} 1',
      'hubble_tcp_flags_total{flag="FIN",family="IPv6"} 1',
      'hubble_tcp_flags_total{flag="RST",family="IPv6"} 1',
    );
    hasNo(lines, "hubble_flows_processed_total");
  });

  test("icmp: family and gopacket's type(code) names, any verdict", async () => {
    const icmp4 = (type: number, code: number): Layer4 => ({ ICMPv4: { type, code } });
    const lines = await scrape("icmp", [
      flow({ l4: icmp4(8, 0) }),
      flow({ l4: icmp4(0, 0), verdict: "DROPPED" }),
      flow({ l4: icmp4(3, 3) }),
      flow({ l4: icmp4(3, 99) }),
      flow({ l4: icmp4(8, 5) }),
      flow({ l4: icmp4(42, 1) }),
      flow({ l4: { ICMPv6: { type: 1, code: 4 } } }),
      flow({ l4: { ICMPv6: { type: 135, code: 0 } } }),
    ]);
    has(
      lines,
      'hubble_icmp_total{family="IPv4",type="EchoRequest"} 1',
      'hubble_icmp_total{family="IPv4",type="EchoReply"} 1',
      'hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Port)"} 1',
      'hubble_icmp_total{family="IPv4",type="DestinationUnreachable(Code: 99)"} 1',
      'hubble_icmp_total{family="IPv4",type="EchoRequest(Code: 5)"} 1',
      'hubble_icmp_total{family="IPv4",type="42(1)"} 1',
      'hubble_icmp_total{family="IPv6",type="DestinationUnreachable(PortUnreachable)"} 1',
      'hubble_icmp_total{family="IPv6",type="NeighborSolicitation"} 1',
    );
  });

  const ftwCases: { name: string; spec: string; want: string[]; absent?: string }[] = [
    {
      name: "default: forwarded requests and policy drops to reserved:world",
      spec: "flows-to-world",
      want: [
        'hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED"} 2',
        'hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 1',
        'hubble_flows_to_world_total{protocol="UDP",verdict="FORWARDED"} 1',
      ],
    },
    {
      name: "any-drop counts every drop",
      spec: "flows-to-world:any-drop",
      want: ['hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED"} 2'],
    },
    {
      name: "port adds the destination port",
      spec: "flows-to-world:port",
      want: [
        'hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED",port="443"} 2',
        'hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED",port="22"} 1',
        'hubble_flows_to_world_total{protocol="UDP",verdict="FORWARDED",port="53"} 1',
      ],
    },
    {
      name: "syn-only counts TCP SYNs that are not replies",
      spec: "flows-to-world:syn-only;port",
      want: [
        'hubble_flows_to_world_total{protocol="TCP",verdict="FORWARDED",port="443"} 1',
        'hubble_flows_to_world_total{protocol="TCP",verdict="DROPPED",port="22"} 1',
      ],
      absent: 'hubble_flows_to_world_total{protocol="UDP"',
    },
  ];
  for (const c of ftwCases)
    test(`flows-to-world: ${c.name}`, async () => {
      const lines = await scrape(c.spec, toWorld);
      has(lines, ...c.want);
      if (c.absent) hasNo(lines, c.absent);
    });

  test("kafka: requests by topic, api_key, error_code, reporter and their duration", async () => {
    const k = (
      kafka: NonNullable<NonNullable<Flow["l7"]>["kafka"]>,
      type: "REQUEST" | "RESPONSE" = "REQUEST",
    ) => flow({ Type: "L7", event_type: { type: 129 }, l7: { type, latency_ns: 3_000_000, kafka } });
    const lines = await scrape("kafka", [
      k({ topic: "orders", api_key: "produce", error_code: 0 }),
      k({ topic: "orders", api_key: "produce", error_code: 0 }),
      k({ topic: "secret", api_key: "fetch", error_code: 29 }),
      k({ topic: "orders", api_key: "produce" }, "RESPONSE"),
    ]);
    has(
      lines,
      'hubble_kafka_requests_total{topic="orders",api_key="produce",error_code="0",reporter="client"} 2',
      'hubble_kafka_requests_total{topic="secret",api_key="fetch",error_code="29",reporter="client"} 1',
      'hubble_kafka_request_duration_seconds_bucket{le="0.005",topic="orders",api_key="produce",reporter="client"} 2',
      'hubble_kafka_request_duration_seconds_count{topic="secret",api_key="fetch",reporter="client"} 1',
    );
  });

  test("dns: queries (one per answer, Policy denied for a drop), responses, response types; L7 protocol DNS", async () => {
    const lines = await scrape("dns flow", dnsFlows);
    has(
      lines,
      'hubble_dns_queries_total{rcode="",qtypes="A",ips_returned="0"} 1',
      'hubble_dns_queries_total{rcode="",qtypes="AAAA",ips_returned="0"} 1',
      'hubble_dns_queries_total{rcode="Policy denied",qtypes="A",ips_returned="0"} 1',
      'hubble_dns_responses_total{rcode="No Error",qtypes="A",ips_returned="2"} 1',
      'hubble_dns_responses_total{rcode="Non-Existent Domain",qtypes="AAAA",ips_returned="0"} 1',
      'hubble_dns_response_types_total{type="A",qtypes="A"} 2',
      'hubble_dns_response_types_total{type="CNAME",qtypes="A"} 1',
      'hubble_flows_processed_total{protocol="DNS",type="L7",subtype="DNS",verdict="FORWARDED"} 2',
    );
  });

  test("dns: query adds the name; ignoreAAAA skips AAAA-only queries", async () => {
    const lines = await scrape("dns:query;ignoreAAAA", dnsFlows);
    has(
      lines,
      'hubble_dns_responses_total{rcode="No Error",qtypes="A",ips_returned="2",query="api.example.com."} 1',
      'hubble_dns_queries_total{rcode="Policy denied",qtypes="A",ips_returned="0",query="evil.test."} 1',
      'hubble_dns_response_types_total{type="A",qtypes="A",query="api.example.com."} 2',
    );
    hasNo(lines, 'hubble_dns_responses_total{rcode="Non-Existent Domain"');
  });

  test("httpV2 counts responses with the context of the request's sides; http (v1) adds responses_total", async () => {
    const v2 = await scrape("httpV2:sourceContext=namespace;destinationContext=namespace", [
      httpResp,
      httpDenied,
    ]);
    has(
      v2,
      'hubble_http_requests_total{source="shop",destination="data",method="GET",protocol="HTTP/1.1",status="200",reporter="client"} 1',
      'hubble_http_request_duration_seconds_bucket{le="0.025",source="shop",destination="data",method="GET",reporter="client"} 1',
    );
    assert.ok(
      !v2.some((l) => l.includes('method="PUT"')),
      "a denied request (a REQUEST record) is not counted",
    );
    const v1 = await scrape("http", [httpResp]);
    has(
      v1,
      'hubble_http_requests_total{method="GET",protocol="HTTP/1.1",reporter="client"} 1',
      'hubble_http_responses_total{method="GET",protocol="HTTP/1.1",status="200",reporter="client"} 1',
    );
  });

  test("flow and policy: L7 protocol names, L7 verdicts as l7/<proto>, host verdicts skipped", async () => {
    const lines = await scrape("flow policy drop", [
      httpResp,
      httpDenied,
      flow({ event_type: { type: 5 }, policy_match_type: 2 }),
      flow({ event_type: { type: 5 }, source: { identity: 1, labels: ["reserved:host"] } }),
      omit(flow({ event_type: { type: 1 }, verdict: "DROPPED", drop_reason_desc: "POLICY_DENIED" }), "l4"),
    ]);
    has(
      lines,
      'hubble_flows_processed_total{protocol="HTTP",type="L7",subtype="HTTP",verdict="FORWARDED"} 1',
      'hubble_flows_processed_total{protocol="HTTP",type="L7",subtype="HTTP",verdict="DROPPED"} 1',
      'hubble_flows_processed_total{protocol="TCP",type="PolicyVerdict",subtype="",verdict="FORWARDED"} 2',
      'hubble_flows_processed_total{protocol="Unknown L4",type="Drop",subtype="",verdict="DROPPED"} 1',
      'hubble_policy_verdicts_total{direction="egress",match="l7/http",action="forwarded"} 1',
      'hubble_policy_verdicts_total{direction="egress",match="l7/http",action="dropped"} 1',
      'hubble_policy_verdicts_total{direction="egress",match="l3-l4",action="forwarded"} 1',
      'hubble_drop_total{reason="POLICY_DENIED",protocol="Unknown L4"} 1',
      'hubble_drop_total{reason="DROP_REASON_UNKNOWN",protocol="HTTP"} 1',
    );
  });

  test("port-distribution: forwarded requests only (no drops, replies, or flows not known to be requests)", async () => {
    const lines = await scrape("port-distribution", [
      flow(),
      flow({ verdict: "DROPPED", l4: tcp({ SYN: true }, 22) }),
      flow({ l4: tcp({ ACK: true }, 40000), is_reply: true }),
      omit(flow({ l4: tcp({ ACK: true }, 40001) }), "is_reply"),
      flow({ l4: { ICMPv4: { type: 8, code: 0 } } }),
    ]);
    has(
      lines,
      'hubble_port_distribution_total{protocol="TCP",port="5432"} 1',
      'hubble_port_distribution_total{protocol="ICMPv4",port="0"} 1',
    );
    for (const p of ["22", "40000", "40001"])
      hasNo(lines, `hubble_port_distribution_total{protocol="TCP",port="${p}"}`);
  });
});

describe("hubble metrics: context options", () => {
  const f = flow();
  const ctxCases: { name: string; opts: string; want: string }[] = [
    {
      name: "namespace",
      opts: "sourceContext=namespace;destinationContext=namespace",
      want: 'source="shop",destination="data"',
    },
    {
      name: "pod (namespace/pod)",
      opts: "sourceContext=pod;destinationContext=pod",
      want: 'source="shop/web-7d9f8b6c5d-x2x4k",destination="data/db-0"',
    },
    { name: "pod-short", opts: "sourceContext=pod-short", want: 'source="shop/web"' },
    { name: "pod-name", opts: "destinationContext=pod-name", want: 'destination="db-0"' },
    {
      name: "workload-name, first non-empty of a | list",
      opts: "sourceContext=workload-name|ip;destinationContext=workload-name|ip",
      want: 'source="web",destination="10.1.0.9"',
    },
    {
      name: "app",
      opts: "sourceContext=app;destinationContext=app",
      want: 'source="webshop",destination="postgres"',
    },
    {
      name: "identity",
      opts: "destinationContext=identity",
      want: 'destination="k8s:app=postgres,k8s:io.kubernetes.pod.namespace=data"',
    },
    { name: "dns", opts: "destinationContext=dns|ip", want: 'destination="db.data.svc."' },
    {
      name: "egress variant wins on egress flows",
      opts: "sourceContext=namespace;sourceEgressContext=pod-name;sourceIngressContext=ip",
      want: 'source="web-7d9f8b6c5d-x2x4k"',
    },
    {
      name: "labelsContext, in Hubble's order",
      opts: "labelsContext=traffic_direction,destination_app,source_workload_kind,source_workload,source_namespace,source_pod,source_ip,destination_ip,destination_pod,destination_namespace,destination_workload,destination_workload_kind,source_app",
      want: 'source_ip="10.1.0.5",source_pod="web-7d9f8b6c5d-x2x4k",source_namespace="shop",source_workload="web",source_workload_kind="Deployment",source_app="webshop",destination_ip="10.1.0.9",destination_pod="db-0",destination_namespace="data",destination_workload="",destination_workload_kind="",destination_app="postgres",traffic_direction="egress"',
    },
  ];
  for (const c of ctxCases)
    test(`${c.name}: ${c.opts}`, async () => {
      const lines = await scrape(`flow:${c.opts}`, [{ ...f, destination_names: ["db.data.svc."] }]);
      has(
        lines,
        `hubble_flows_processed_total{protocol="TCP",type="Trace",subtype="to-endpoint",verdict="FORWARDED",${c.want}} 1`,
      );
    });

  test("reserved-identity: kube-apiserver first, else the first reserved label", async () => {
    const lines = await scrape("drop:destinationContext=reserved-identity", [
      flow({
        verdict: "DROPPED",
        destination: { identity: 7, labels: ["reserved:kube-apiserver", "reserved:world"] },
      }),
      flow({ verdict: "DROPPED", destination: world }),
    ]);
    has(
      lines,
      'hubble_drop_total{destination="reserved:kube-apiserver",reason="DROP_REASON_UNKNOWN",protocol="TCP"} 1',
      'hubble_drop_total{destination="reserved:world",reason="DROP_REASON_UNKNOWN",protocol="TCP"} 1',
    );
  });

  test("every handler takes the context options; drop, DNS, HTTP and Kafka put them first, as Hubble", async () => {
    const names = METRIC_HANDLERS.filter((h) => h !== "http");
    const spec = names.map((h) => `${h}:sourceContext=namespace;labelsContext=traffic_direction`).join(" ");
    const m = new FlowMetrics({ handlers: parseMetricsList([spec]) });
    const json = await m.registry.getMetricsAsJSON();
    const hubble = json.filter((j) => j.name.startsWith("hubble_") && j.name !== "hubble_lost_events_total");
    assert.equal(hubble.length, 14, hubble.map((j) => j.name).join());
    for (const j of hubble) {
      const labels = (m.registry.getSingleMetric(j.name) as unknown as { labelNames: string[] }).labelNames;
      const l7 = /_(dns|http|kafka)_|_drop_/.test(j.name);
      const ctx = l7 ? labels.slice(0, 2) : labels.slice(-2);
      assert.deepEqual(ctx, ["traffic_direction", "source"], `${j.name}: ${labels.join()}`);
    }
  });

  test(
    "promtool accepts a scrape of every handler with context labels",
    {
      skip:
        spawnSync("sh", ["-c", "command -v promtool"]).status === 0
          ? false
          : "needs promtool (apt-get install -y prometheus)",
    },
    async () => {
      const spec =
        "flow:labelsContext=source_namespace,destination_namespace tcp:sourceContext=pod icmp flows-to-world:port dns:query port-distribution drop policy httpV2:destinationContext=app kafka";
      const m = new FlowMetrics({ handlers: parseMetricsList([spec]) });
      for (const x of [...toWorldSample(), httpResp, httpDenied, ...dnsFlows]) m.observeFlow(x);
      const r = spawnSync("promtool", ["check", "metrics"], {
        input: await m.registry.metrics(),
        encoding: "utf8",
      });
      assert.equal(r.status, 0, r.stdout + r.stderr);
      assert.equal((r.stdout + r.stderr).trim(), "");
    },
  );

  function toWorldSample(): Flow[] {
    return [flow({ destination: world }), flow({ l4: { ICMPv4: { type: 8, code: 0 } } })];
  }
});

describe("hubble metrics: --hubble-metrics parsing", () => {
  test("Hubble's syntax: blank-separated items, ; options, case-insensitive keys", () => {
    const specs = parseMetricsList([
      "dns:query;ignoreAAAA tcp",
      "flow:SourceContext=namespace;destinationContext=pod|IP httpV2:exemplars=true",
    ]);
    assert.deepEqual(
      specs.map((s) => s.name),
      ["dns", "tcp", "flow", "httpV2"],
    );
    assert.deepEqual([...(specs[0]?.options.keys() ?? [])], ["query", "ignoreaaaa"]);
    assert.deepEqual(specs[2]?.context, { source: ["namespace"], destination: ["pod", "ip"] });
  });

  test("cilium-agent's comma form: commas before a handler name separate items", () => {
    const specs = parseMetricsList(["dns,drop,flow:labelsContext=source_pod,source_namespace,tcp"]);
    assert.deepEqual(
      specs.map((s) => s.name),
      ["dns", "drop", "flow", "tcp"],
    );
    assert.deepEqual(specs[2]?.context, { labels: ["source_pod", "source_namespace"] });
  });

  const bad: { name: string; spec: string; message: RegExp }[] = [
    {
      name: "an unknown handler",
      spec: "tcp bogus",
      message: /item 2 "bogus": unknown metric handler "bogus"/,
    },
    {
      name: "an unknown option",
      spec: "dns:query;qeury",
      message: /item 1 "dns:query;qeury": unknown option "qeury" of dns/,
    },
    { name: "an option of another handler", spec: "tcp:port", message: /unknown option "port" of tcp/ },
    {
      name: "an unknown context identifier",
      spec: "flow:sourceContext=namespace|podd",
      message: /option sourceContext: unknown context "podd"/,
    },
    {
      name: "an empty context",
      spec: "flow:destinationContext=",
      message: /option destinationContext: unknown context ""/,
    },
    {
      name: "an unknown labelsContext label",
      spec: "drop:labelsContext=source_namespace,source_nodename",
      message: /option labelsContext: invalid labelsContext value "source_nodename"/,
    },
    {
      name: "a handler twice",
      spec: "tcp icmp tcp:sourceContext=ip",
      message: /item 3 .*handler tcp is enabled twice/,
    },
    { name: "http beside httpV2", spec: "httpV2 http", message: /handler http conflicts with httpV2/ },
  ];
  for (const c of bad)
    test(`refuses ${c.name}, naming it`, () => {
      assert.throws(
        () => parseMetricsList([c.spec]),
        (e: { code?: string; message: string; hint?: string }) => {
          assert.equal(e.code, "METRICS_CONFIG_INVALID");
          assert.match(e.message, /^Cannot enable Hubble metrics: --hubble-metrics /);
          assert.match(e.message, c.message);
          assert.ok(e.hint, "a hint says what is accepted");
          return true;
        },
      );
    });
});
