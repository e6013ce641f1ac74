import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { PortRule } from "../../../src/policy/types.js";
import { cnp, elemStr, rule } from "./helpers.js";

/** The first element's first port rule, from an egress (or ingress) element written as YAML. */
function portRule(element: string, dir: "ingress" | "egress" = "egress"): PortRule {
  const r = rule(cnp(`endpointSelector: {}\n${dir}:\n${element}`));
  const e = r[dir][0];
  assert.ok(e?.ports?.[0]);
  return e.ports[0];
}

const NS = "k8s:io.kubernetes.pod.namespace=ns1";

interface Case {
  name: string;
  element: string;
  dir?: "ingress" | "egress";
  want: PortRule;
}

const cases: Case[] = [
  {
    name: "Star Wars rule1 (L7): POST /v1/request-landing from empire ships",
    dir: "ingress",
    element: `- fromEndpoints: [{matchLabels: {org: empire}}]
  toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - method: "POST"
        path: "/v1/request-landing"`,
    want: {
      ports: [{ protocol: "TCP", port: 80, endPort: 80 }],
      l7: { kind: "http", rules: [{ method: "POST", path: "/v1/request-landing", headers: [] }] },
    },
  },
  {
    name: "protocol defaults to ANY; numeric and string ports; endPort range",
    element: `- toPorts: [{ports: [{port: 53}, {port: "8000", endPort: 8080, protocol: tcp}, {port: "0", protocol: UDP}]}]`,
    want: {
      ports: [
        { protocol: "ANY", port: 53, endPort: 53 },
        { protocol: "TCP", port: 8000, endPort: 8080 },
        { protocol: "UDP", port: 0, endPort: 0 },
      ],
    },
  },
  {
    name: "named ports are lower-cased and carry no number",
    element: `- toPorts: [{ports: [{port: Metrics, protocol: TCP}]}]`,
    want: { ports: [{ protocol: "TCP", port: 0, endPort: 0, name: "metrics" }] },
  },
  {
    name: "a port rule without ports means every port of every protocol",
    element: `- toEndpoints: [{}]\n  toPorts: [{}]`,
    want: { ports: [{ protocol: "ANY", port: 0, endPort: 0 }] },
  },
  {
    name: "HTTP headers: presence, 'Name: value' and 'Name value'; headerMatches with value",
    element: `- toPorts:
  - ports: [{port: "8080", protocol: TCP}]
    rules:
      http:
      - path: "/api/.*"
        host: "(www\\\\.)?example\\\\.com"
        headers: ["X-Trace", "X-Env: prod", "X-Id 42"]
        headerMatches: [{name: Authorization, value: "Bearer t"}, {name: X-Present, mismatch: ""}]`,
    want: {
      ports: [{ protocol: "TCP", port: 8080, endPort: 8080 }],
      l7: {
        kind: "http",
        rules: [
          {
            path: "/api/.*",
            host: "(www\\.)?example\\.com",
            headers: [
              { name: "X-Trace" },
              { name: "X-Env", value: "prod" },
              { name: "X-Id", value: "42" },
              { name: "Authorization", value: "Bearer t" },
              { name: "X-Present" },
            ],
          },
        ],
      },
    },
  },
  {
    name: "f7 headerMatches with mismatch actions keep the action",
    element: `- toPorts:
  - ports: [{port: "80", protocol: TCP}]
    rules:
      http:
      - headerMatches:
        - {name: X-Env, value: prod, mismatch: REPLACE}
        - {name: X-Trace, value: "on", mismatch: ADD}
        - {name: X-Debug, value: "off", mismatch: DELETE}
        - {name: X-Token, mismatch: LOG}`,
    want: {
      ports: [{ protocol: "TCP", port: 80, endPort: 80 }],
      l7: {
        kind: "http",
        rules: [
          {
            headers: [
              { name: "X-Env", value: "prod", mismatch: "REPLACE" },
              { name: "X-Trace", value: "on", mismatch: "ADD" },
              { name: "X-Debug", value: "off", mismatch: "DELETE" },
              { name: "X-Token", mismatch: "LOG" },
            ],
          },
        ],
      },
    },
  },
  {
    name: "an empty HTTP rule {} is kept (matches every request)",
    element: `- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}]}}]`,
    want: {
      ports: [{ protocol: "TCP", port: 80, endPort: 80 }],
      l7: { kind: "http", rules: [{ headers: [] }] },
    },
  },
  {
    name: "DNS rules on UDP and ANY, names normalised",
    element: `- toEndpoints: [{matchLabels: {"k8s:k8s-app": kube-dns, "k8s:io.kubernetes.pod.namespace": kube-system}}]
  toPorts:
  - ports: [{port: "53", protocol: ANY}, {port: "53", protocol: UDP}]
    rules:
      dns: [{matchPattern: "*"}, {matchName: Example.COM}]`,
    want: {
      ports: [
        { protocol: "ANY", port: 53, endPort: 53 },
        { protocol: "UDP", port: 53, endPort: 53 },
      ],
      l7: { kind: "dns", rules: [{ matchPattern: "*." }, { matchName: "example.com." }] },
    },
  },
  {
    name: "Kafka: role lower-cased, apiKey, apiVersion as string or number, topic, clientID",
    element: `- toPorts:
  - ports: [{port: "9092", protocol: TCP}]
    rules:
      kafka:
      - {role: Produce, topic: deathstar-plans}
      - {apiKey: Fetch, apiVersion: "2", clientID: ship-1}
      - {apiKey: metadata, apiVersion: 0}`,
    want: {
      ports: [{ protocol: "TCP", port: 9092, endPort: 9092 }],
      l7: {
        kind: "kafka",
        rules: [
          { role: "produce", topic: "deathstar-plans" },
          { apiKey: "fetch", apiVersion: 2, clientID: "ship-1" },
          { apiKey: "metadata", apiVersion: 0 },
        ],
      },
    },
  },
  {
    name: "serverNames lower-cased; with HTTP rules and terminatingTLS/originatingTLS",
    element: `- toFQDNs: [{matchName: api.example.com}]
  toPorts:
  - ports: [{port: "443", protocol: TCP}]
    serverNames: [API.Example.com, "*.example.org"]
    terminatingTLS: {secret: {namespace: certs, name: intercept}, certificate: tls.crt}
    originatingTLS: {secret: {name: ca-bundle}, trustedCA: ca.crt}
    rules:
      http: [{method: GET}]`,
    want: {
      ports: [{ protocol: "TCP", port: 443, endPort: 443 }],
      l7: { kind: "http", rules: [{ method: "GET", headers: [] }] },
      serverNames: ["api.example.com", "*.example.org"],
      terminatingTLS: { secret: { namespace: "certs", name: "intercept" }, certificate: "tls.crt" },
      originatingTLS: { secret: { name: "ca-bundle" }, trustedCA: "ca.crt" },
    },
  },
  {
    name: "serverNames alone (no L7) need no TLS settings",
    element: `- toPorts: [{ports: [{port: "443", protocol: TCP}], serverNames: [example.com]}]`,
    want: { ports: [{ protocol: "TCP", port: 443, endPort: 443 }], serverNames: ["example.com"] },
  },
  {
    name: "rules: {http: []} is no L7 at all (as Cilium)",
    element: `- toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: []}}]`,
    want: { ports: [{ protocol: "TCP", port: 80, endPort: 80 }] },
  },
];

describe("toPorts, L7 rules and TLS", () => {
  for (const c of cases) test(c.name, () => assert.deepEqual(portRule(c.element, c.dir), c.want));
});

describe("icmps", () => {
  const icmpCases: { name: string; fields: string; want: string[] }[] = [
    { name: "numbers default to IPv4", fields: "[{type: 8}, {type: 0}]", want: ["IPv4/8", "IPv4/0"] },
    {
      name: "IPv4 names",
      fields:
        "[{type: EchoRequest}, {type: DestinationUnreachable}, {type: TimeExceeded}, {family: IPv4, type: EchoReply}]",
      want: ["IPv4/8", "IPv4/3", "IPv4/11", "IPv4/0"],
    },
    {
      name: "IPv6 names map to ICMPv6 numbers",
      fields:
        "[{family: IPv6, type: EchoRequest}, {family: IPv6, type: PacketTooBig}, {family: IPv6, type: NeighborSolicitation}, {family: IPv6, type: 255}]",
      want: ["IPv6/128", "IPv6/2", "IPv6/135", "IPv6/255"],
    },
    {
      name: "several icmps entries are flattened in order",
      fields: "[{type: 8}]}, {fields: [{type: 13}]",
      want: ["IPv4/8", "IPv4/13"],
    },
  ];
  for (const c of icmpCases) {
    test(c.name, () => {
      const r = rule(
        cnp(`endpointSelector: {}\ningress:\n- fromEntities: [world]\n  icmps: [{fields: ${c.fields}}]`),
      );
      assert.deepEqual(r.ingress.map(elemStr), [{ peers: ["entity(world)"], icmps: c.want }]);
    });
  }
  test("an ingress element with icmps keeps its namespace-scoped peers", () => {
    const r = rule(
      cnp("endpointSelector: {}\ningress:\n- fromEndpoints: [{}]\n  icmps: [{fields: [{type: 8}]}]"),
    );
    assert.deepEqual(r.ingress.map(elemStr), [{ peers: [`endpoints(${NS})`], icmps: ["IPv4/8"] }]);
  });
});
