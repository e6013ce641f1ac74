/**
 * `policy test --datapath` L7 planning without the kernel: which L7 request
 * a query makes (or why it is skipped), and which server each destination
 * port runs.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { QueryPlan, Side } from "../../src/scenario/datapath-plan.js";
import { assignListeners } from "../../src/scenario/datapath-plan-l7.js";
import { plans, type Plan } from "./datapath-l7-world.js";

const client = { kind: "endpoint", key: "default/client" } as const;
const web = { kind: "endpoint", key: "default/web" } as const;
const toWeb = { from: client, to: web, family: 4, address: "10.0.1.10" } as const;

const CASES: { name: string; query: string; want: Plan }[] = [
  {
    name: "a Kafka produce is one request of the default version, with a null client id",
    query:
      "{from: client, to: web, proto: TCP, port: 9092, kafka: {apiKey: produce, topic: t}, expect: allow}",
    want: {
      ...toWeb,
      kind: "kafka",
      port: 9092,
      kafka: { apiKey: 0, apiVersion: 3, topic: "t" },
      proxied: "kafka",
    },
  },
  {
    name: "a Kafka request keeps the query's version and client id",
    query:
      "{from: client, to: web, proto: TCP, port: 9092, kafka: {apiKey: fetch, apiVersion: 7, clientID: c1, topic: t}, expect: deny}",
    want: {
      ...toWeb,
      kind: "kafka",
      port: 9092,
      kafka: { apiKey: 1, apiVersion: 7, topic: "t", clientID: "c1" },
      proxied: "kafka",
    },
  },
  {
    name: "a Kafka request kind the probe does not speak is skipped",
    query:
      "{from: client, to: web, proto: TCP, port: 9092, kafka: {apiKey: offsetcommit, topic: t}, expect: deny}",
    want: { skip: "the probe speaks Kafka produce, fetch, metadata and apiversions, not offsetcommit" },
  },
  {
    name: "a Kafka version the proxy cannot read is skipped",
    query:
      "{from: client, to: web, proto: TCP, port: 9092, kafka: {apiKey: produce, apiVersion: 9, topic: t}, expect: deny}",
    want: { skip: "Kafka produce version 9: the probe and the proxy read up to 8" },
  },
  {
    name: "a TLS query is a handshake with its SNI, handed to the proxy by the client's egress",
    query:
      "{from: client, to: world:203.0.113.5, proto: TCP, port: 443, tls: {sni: api.example.com}, expect: allow}",
    want: {
      from: client,
      to: { kind: "outside", ip: "203.0.113.5" },
      family: 4,
      address: "203.0.113.5",
      kind: "tls",
      port: 443,
      sni: "api.example.com",
      proxied: "tls",
    },
  },
  {
    name: "f7 a query without TLS on a serverNames port sends plain bytes (no ClientHello), which the proxy must reset",
    query: "{from: client, to: world:203.0.113.5, proto: TCP, port: 443, expect: deny}",
    want: {
      from: client,
      to: { kind: "outside", ip: "203.0.113.5" },
      family: 4,
      address: "203.0.113.5",
      kind: "tcp",
      port: 443,
      serve: "tls",
      proxied: "tls",
    },
  },
  {
    name: "HTTP inside TLS on an HTTP port is skipped (it needs TLS termination)",
    query:
      "{from: client, to: web, proto: TCP, port: 80, tls: {sni: web.local}, http: {method: GET, path: /}, expect: deny}",
    want: {
      skip: "HTTP inside TLS needs the proxy to terminate TLS (terminatingTLS secrets), which this mode does not set up",
    },
  },
  {
    name: "an HTTP request to a Kafka port is skipped: the engine does not judge it as the proxy would",
    query: "{from: client, to: web, proto: TCP, port: 9092, http: {method: GET, path: /}, expect: allow}",
    want: {
      skip: "the query makes a http request, but the L7 rules of this port are kafka: the kafka proxy refuses those bytes, which the offline engine does not judge",
    },
  },
  {
    name: "two parsers on one port for one peer are skipped (the proxy resets, the engine says drop)",
    query: "{from: client, to: web, proto: TCP, port: 8000, http: {method: GET, path: /}, expect: deny}",
    want: {
      skip: "two L7 parsers claim this port for this peer: the kernel hands the connection to the proxy, which resets it, where the offline engine says drop",
    },
  },
  {
    name: "a plain UDP datagram to a DNS-proxied port is skipped (the proxy drops what is not DNS)",
    query: "{from: client, to: kube-dns, proto: UDP, port: 53, expect: allow}",
    want: {
      skip: "a plain UDP datagram to a port the DNS proxy handles is not a DNS query: the proxy drops it, where the offline engine allows it (no request to judge)",
    },
  },
  {
    name: "a DNS query to the resolver goes through the DNS proxy",
    query: "{from: client, to: kube-dns, proto: UDP, dnsQuery: www.example.com, expect: allow}",
    want: {
      from: client,
      to: { kind: "endpoint", key: "kube-system/kube-dns" },
      family: 4,
      address: "10.0.1.53",
      kind: "dns",
      port: 53,
      dns: { name: "www.example.com", tcp: false },
      proxied: "dns",
    },
  },
  {
    name: "an HTTP request carries the query's host and headers",
    query:
      "{from: client, to: web, proto: TCP, port: 80, http: {method: GET, path: /public/a, host: web.local, headers: {X-Token: abc}}, expect: allow}",
    want: {
      ...toWeb,
      kind: "http",
      port: 80,
      http: { method: "GET", path: "/public/a", headers: { Host: "web.local", "X-Token": "abc" } },
      proxied: "http",
    },
  },
  {
    name: "a request without host is skipped when the Host a client sends would change the verdict",
    query: "{from: client, to: web, proto: TCP, port: 8080, http: {method: GET, path: /}, expect: deny}",
    want: {
      skip: 'the verdict depends on the Host header, which the query does not give (an HTTP/1.1 request carries one: "Host: 10.0.1.10:8080")',
    },
  },
  {
    name: "a request that names its host is not affected by the Host check",
    query:
      "{from: client, to: web, proto: TCP, port: 8080, http: {method: GET, path: /, host: web.local}, expect: deny}",
    want: {
      ...toWeb,
      kind: "http",
      port: 8080,
      http: { method: "GET", path: "/", headers: { Host: "web.local" } },
      proxied: "http",
    },
  },
  {
    name: "an HTTP request the kernel drops at L3/L4 is not redirected (other has no allow)",
    query:
      "{from: other, to: web, proto: TCP, port: 80, http: {method: GET, path: /public/a}, expect: deny, how: drop}",
    want: {
      ...toWeb,
      from: { kind: "endpoint", key: "default/other" },
      kind: "http",
      port: 80,
      http: { method: "GET", path: "/public/a", headers: { Host: "10.0.1.10" } },
    },
  },
];

describe("datapath plan: L7 requests", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const got = plans(`  - ${c.query}\n`);
      assert.deepEqual(got[got.length - 1], c.want);
    });
  }
});

describe("datapath plan: one server per destination port", () => {
  const tcp = (port: number, to: Side = web): QueryPlan => ({ ...toWeb, to, kind: "tcp", port });
  const l7 = (kind: "http" | "kafka", port: number): QueryPlan => ({ ...toWeb, kind, port });
  const dns = { kind: "endpoint", key: "kube-system/kube-dns" } as const;
  const cases: {
    name: string;
    plans: (QueryPlan | { skip: string })[];
    resolvers?: (typeof dns)[];
    want: (string | { skip: string })[];
  }[] = [
    {
      name: "plain TCP before an HTTP request to the same port becomes a bare connect to the HTTP server",
      plans: [tcp(80), l7("http", 80)],
      want: ["connect http 80", "http - 80"],
    },
    {
      name: "a second protocol on a port is skipped; the first keeps it",
      plans: [l7("http", 80), l7("kafka", 80)],
      want: [
        "http - 80",
        { skip: "the destination's TCP/80 already serves http for another query of this scenario" },
      ],
    },
    {
      name: "ports and destinations do not share servers",
      plans: [l7("http", 80), tcp(81), tcp(80, client)],
      want: ["http - 80", "tcp - 81", "tcp - 80"],
    },
    {
      name: "plain UDP to a resolver answering fed DNS stays an echo (the resolver echoes it)",
      plans: [{ ...toWeb, to: dns, kind: "udp", port: 53 }],
      resolvers: [dns],
      want: ["udp - 53"],
    },
    {
      name: "DNS over TCP claims the TCP port: plain TCP to it becomes a connect",
      plans: [
        { ...toWeb, kind: "tcp", port: 53 },
        { ...toWeb, kind: "dns", port: 53, dns: { name: "a", tcp: true } },
      ],
      want: ["connect dns 53", "dns - 53"],
    },
    {
      name: "f7 plain bytes to a serverNames port stay plain bytes next to a TLS handshake on it",
      plans: [
        { ...toWeb, kind: "tcp", port: 443, serve: "tls", proxied: "tls" },
        { ...toWeb, kind: "tls", port: 443, sni: "a", proxied: "tls" },
      ],
      want: ["tcp tls 443", "tls - 443"],
    },
    {
      name: "a bare connect to a proxied port gives the port its L7 server for later plain TCP",
      plans: [tcp(9092), { ...toWeb, kind: "connect", port: 9092, serve: "kafka", proxied: "kafka" }],
      want: ["connect kafka 9092", "connect kafka 9092"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const got = assignListeners(c.plans, c.resolvers ?? []).map((p) =>
        "skip" in p ? p : `${p.kind} ${p.serve ?? "-"} ${p.port ?? 0}`,
      );
      assert.deepEqual(got, c.want);
    });
  }
});
