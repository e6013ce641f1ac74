import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parsePolicies } from "../../src/policy/api/index.js";
import { PolicyEngine } from "../../src/policy/engine.js";
import type { FlowQuery } from "../../src/policy/query.js";
import { explainDrop } from "../../src/policy/why.js";

function world(policies: string): PolicyEngine {
  const e = new PolicyEngine();
  e.upsertEndpoint({ name: "api", namespace: "prod", labels: { app: "api" }, ips: ["10.0.0.1"] });
  e.upsertEndpoint({ name: "web", namespace: "prod", labels: { app: "web" }, ips: ["10.0.0.2"] });
  e.upsertEndpoint({ name: "job", namespace: "batch", labels: { app: "job" }, ips: ["10.0.0.3"] });
  for (const p of parsePolicies(policies, "p.yaml")) e.upsertPolicy(p);
  return e;
}
const ep = (name: string, namespace: string) => ({ kind: "endpoint" as const, name, namespace });
const API_INGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
`;
const WEB_EGRESS = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: web-out, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress: [{toEndpoints: [{matchLabels: {app: api}}], toPorts: [{ports: [{port: "80", protocol: TCP}]}]}]
`;
const API_HTTP = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api-http, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress: [{fromEndpoints: [{matchLabels: {app: web}}], toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]}]
`;
const DENY = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: no-ssh, namespace: prod}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingressDeny: [{fromEndpoints: [{}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  ingress: [{fromEndpoints: [{}]}]
`;

describe("policy why", () => {
  const cases: {
    name: string;
    policies: string;
    q: FlowQuery;
    lines: RegExp[];
    proposal?: RegExp[];
    verified?: boolean;
  }[] = [
    {
      name: "an allowed flow needs no change",
      policies: API_INGRESS,
      q: { from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 80 },
      lines: [/is allowed by the current policies/],
    },
    {
      name: "ingress default deny proposes exactly this peer and port, verified",
      policies: API_INGRESS,
      q: { from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 443 },
      lines: [/denied by the ingress policy of prod\/api/, /default deny/],
      proposal: [
        /name: allow-web-to-api-tcp-443/,
        /endpointSelector:\n\s+matchLabels:\n\s+app: api/,
        /fromEndpoints:\n\s+- matchLabels:\n\s+app: web/,
        /port: "443"/,
      ],
      verified: true,
    },
    {
      name: "a peer in another namespace is named with its namespace label",
      policies: API_INGRESS,
      q: { from: ep("job", "batch"), to: ep("api", "prod"), proto: "TCP", port: 80 },
      lines: [/default deny/],
      proposal: [/k8s:io\.kubernetes\.pod\.namespace: batch/],
      verified: true,
    },
    {
      name: "egress default deny proposes an egress rule on the source",
      policies: WEB_EGRESS,
      q: { from: ep("web", "prod"), to: ep("job", "batch"), proto: "UDP", port: 53 },
      lines: [/denied by the egress policy of prod\/web/],
      proposal: [/egress:\n\s+- toEndpoints/, /protocol: UDP/],
      verified: true,
    },
    {
      name: "an outside address is proposed as a /32 CIDR",
      policies: API_INGRESS,
      q: { from: { kind: "ip", ip: "192.0.2.7" }, to: ep("api", "prod"), proto: "TCP", port: 80 },
      lines: [/default deny/],
      proposal: [/fromCIDR:\n\s+- 192\.0\.2\.7\/32/],
      verified: true,
    },
    {
      name: "ICMP is proposed as an icmps rule",
      policies: API_INGRESS,
      q: { from: ep("web", "prod"), to: ep("api", "prod"), proto: "ICMP", icmpType: 8 },
      lines: [/default deny/],
      proposal: [/icmps:/, /type: 8/],
      verified: true,
    },
    {
      name: "a deny rule gets no allow proposal: deny wins",
      policies: DENY,
      q: { from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 22 },
      lines: [
        /A deny rule matches: prod\/no-ssh spec\.ingressDeny\[0\]/,
        /no added allow can let this through/,
      ],
    },
    {
      name: "when the other side also denies, the proposal is not claimed to be enough",
      policies: API_INGRESS + "---\n" + WEB_EGRESS,
      q: { from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 8080 },
      lines: [/egress policy of prod\/web/, /would not be enough/],
      proposal: [/toEndpoints/],
      verified: false,
    },
    {
      name: "an L7 refusal names the request and the rule to add, with hostile bytes of the request escaped",
      policies: API_HTTP,
      q: {
        from: ep("web", "prod"),
        to: ep("api", "prod"),
        proto: "TCP",
        port: 80,
        http: { method: "PUT", path: '/a.b"\n  - {}\u001b[2J' },
      },
      lines: [
        /refused the request/,
        /^The request was PUT \/a\.b\\"\\n  - \{\}\\u001b\[2J\. To allow it/m,
        /^ {2}- method: "PUT"$/m,
        /^ {4}path: "\/a\\\\\.b\\"\\n  - \\\\\{\\\\\}\\u001b\\\\\[2J"$/m,
        /^(?![\s\S]*\u001b)/,
      ],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const a = explainDrop(world(c.policies), c.q);
      const text = a.lines.join("\n");
      for (const re of c.lines) assert.match(text, re);
      if (c.proposal) {
        assert.ok(a.proposal, text);
        for (const re of c.proposal) assert.match(a.proposal, re);
        assert.equal(a.verified, c.verified);
      } else {
        assert.equal(a.proposal, undefined);
      }
    });
  }
  test("the engine asked is not changed by the check", () => {
    const e = world(API_INGRESS);
    const rev = e.revision;
    explainDrop(e, { from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 443 });
    assert.equal(e.revision, rev);
    assert.equal(
      e.decide({ from: ep("web", "prod"), to: ep("api", "prod"), proto: "TCP", port: 443 }).verdict,
      "deny",
    );
  });
});
