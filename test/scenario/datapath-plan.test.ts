/**
 * `policy test --datapath` without the kernel: which queries run (and how),
 * which are skipped and why, the scratch node's pod CIDRs, and how a probe's
 * result becomes a verdict.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseScenario } from "../../src/policy/scenario/load.js";
import { ScenarioSession } from "../../src/policy/scenario/session.js";
import { compare } from "../../src/policy/scenario/run.js";
import {
  coveringPrefix,
  learnDns,
  nodeCidrs,
  planQuery,
  scenarioSkipReason,
} from "../../src/scenario/datapath-plan.js";
import { countDatapath, observedResult } from "../../src/scenario/datapath.js";
import { prefixString } from "../../src/labels/cidr.js";

const WORLD = `
name: plan
endpoints:
  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}
  - {name: client, namespace: default, labels: {app: client}, ip: 10.0.1.20}
policies: |
  apiVersion: cilium.io/v2
  kind: CiliumNetworkPolicy
  metadata: {name: web, namespace: default}
  spec:
    endpointSelector: {matchLabels: {app: web}}
    ingress:
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
      - fromEndpoints: [{matchLabels: {app: client}}]
        toPorts: [{ports: [{port: "53", protocol: UDP}, {port: "9000", protocol: SCTP}]}]
      - fromEndpoints: [{matchLabels: {app: client}}]
        icmps: [{fields: [{type: 8}, {type: 13}]}]
      - fromCIDR: [192.0.2.0/24, 198.51.100.0/24]
      - fromEntities: [host, kube-apiserver]
`;

/** Plans every query of WORLD plus `queries` (YAML flow items). */
function plans(queries: string, head = WORLD): ReturnType<typeof planQuery>[] {
  const s = parseScenario(`${head}queries:\n${queries}`, "t.yaml");
  const session = new ScenarioSession({ world: s });
  const dnsNames = new Map<string, string[]>();
  const ctx = { scenario: s, cidrs: nodeCidrs(s), dnsNames };
  return s.queries.map((q) => {
    const d = session.engine.decide(session.prepare(q, { prefix: "" }));
    learnDns(dnsNames, q);
    return planQuery(q, d, ctx);
  });
}

const skip = (reason: string) => ({ skip: reason });
const CASES: { name: string; query: string; want: ReturnType<typeof planQuery> }[] = [
  {
    name: "an allowed TCP query runs from the source endpoint to the destination's address",
    query: "{from: client, to: web, proto: UDP, port: 53, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "udp",
      port: 53,
    },
  },
  {
    name: "an http query runs as an HTTP request the kernel hands to the proxy, with the Host a client sends",
    query: "{from: client, to: web, proto: TCP, port: 80, http: {method: GET, path: /}, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "http",
      port: 80,
      http: { method: "GET", path: "/", headers: { Host: "10.0.1.10" } },
      proxied: "http",
    },
  },
  {
    name: "a plain TCP query to a port with HTTP rules is a bare connect to the proxy",
    query: "{from: client, to: web, proto: TCP, port: 80, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "connect",
      port: 80,
      serve: "http",
      proxied: "http",
    },
  },
  {
    name: "an L7 query dropped at L3/L4 runs as its L7 request, not redirected (Host carries the port)",
    query:
      "{from: host, to: web, proto: TCP, port: 8080, http: {method: GET, path: /}, expect: deny, how: drop}",
    want: {
      from: { kind: "host" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "http",
      port: 8080,
      http: { method: "GET", path: "/", headers: { Host: "10.0.1.10:8080" } },
    },
  },
  {
    name: "a dnsQuery to a port no DNS rule covers runs as a DNS query the proxy never sees",
    query: "{from: client, to: web, proto: UDP, dnsQuery: example.com, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "dns",
      port: 53,
      dns: { name: "example.com", tcp: false },
    },
  },
  {
    name: "SCTP is skipped: the kernel cannot open SCTP sockets",
    query: "{from: client, to: web, proto: SCTP, port: 9000, expect: allow}",
    want: skip("SCTP: this kernel cannot open SCTP sockets"),
  },
  {
    name: "ICMP echo request runs as a ping",
    query: "{from: client, to: web, proto: ICMP, icmpType: 8, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "ping",
    },
  },
  {
    name: "ICMP types other than echo request are skipped",
    query: "{from: client, to: web, proto: ICMP, icmpType: 13, expect: allow}",
    want: skip(
      "only ICMP echo requests (type 8) can be sent (ping; the probes have no raw sockets), not type 13",
    ),
  },
  {
    name: "a query carrying DNS answers runs (the answers are fed to the agent first)",
    query:
      "{from: client, to: web, proto: UDP, port: 53, dns: [{name: a.com, ips: [192.0.2.7]}], expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "udp",
      port: 53,
    },
  },
  {
    name: "an fqdn: peer is the outside address of the first answer the session knows for the name",
    query:
      "{from: client, to: world:192.0.2.9, proto: TCP, port: 1, dns: [{name: b.com, ips: [192.0.2.8, 192.0.2.9]}], expect: allow}\n" +
      "  - {from: client, to: fqdn:B.com., proto: TCP, port: 443, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "outside", ip: "192.0.2.8" },
      family: 4,
      address: "192.0.2.8",
      kind: "tcp",
      port: 443,
    },
  },
  {
    name: "an address some DNS answer names is an outside namespace like any other (the kernel learns the answer too)",
    query:
      "{from: client, to: web, proto: TCP, port: 1, dns: [{name: b.com, ips: [192.0.2.8]}], expect: allow}\n" +
      "  - {from: world:192.0.2.8, to: web, proto: TCP, port: 81, expect: allow}",
    want: {
      from: { kind: "outside", ip: "192.0.2.8" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "tcp",
      port: 81,
    },
  },
  {
    name: "a query with a valid authentication entry runs with the source's SVID valid (auth: true)",
    query: "{from: client, to: web, proto: UDP, port: 53, auth: true, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/client" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "udp",
      port: 53,
      auth: true,
    },
  },
  {
    name: "a query to the node's L7 proxy port is skipped",
    query: "{from: web, to: host, proto: TCP, port: 15001, expect: allow}",
    want: skip("port 15001 of the node is the scratch node's L7 proxy"),
  },
  {
    name: "a world address comes from an outside namespace holding that address",
    query: "{from: world:192.0.2.5, to: web, proto: TCP, port: 22, expect: allow}",
    want: {
      from: { kind: "outside", ip: "192.0.2.5" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "tcp",
      port: 22,
    },
  },
  {
    name: "a kube-apiserver address is an outside namespace the agent knows as a node address",
    query: "{from: kube-apiserver:198.51.100.1, to: web, proto: TCP, port: 22, expect: allow}",
    want: {
      from: { kind: "outside", ip: "198.51.100.1", node: "kube-apiserver" },
      to: { kind: "endpoint", key: "default/web" },
      family: 4,
      address: "10.0.1.10",
      kind: "tcp",
      port: 22,
    },
  },
  {
    name: "an outside address equal to the node's gateway is skipped",
    query: "{from: kube-apiserver:10.0.1.1, to: web, proto: TCP, port: 22, expect: allow}",
    want: skip("10.0.1.1 is the scratch node's own gateway address"),
  },
  {
    name: "an outside address equal to an endpoint's is skipped",
    query: "{from: world:10.0.1.20, to: web, proto: TCP, port: 22, expect: deny}",
    want: skip("10.0.1.20 is the address of endpoint default/client"),
  },
  {
    name: "the host as destination is the node's gateway address",
    query: "{from: web, to: host, proto: TCP, port: 10250, expect: allow}",
    want: {
      from: { kind: "endpoint", key: "default/web" },
      to: { kind: "host" },
      family: 4,
      address: "10.0.1.1",
      kind: "tcp",
      port: 10250,
    },
  },
  {
    name: "an IPv6 outside address in a single-stack scenario is skipped",
    query: "{from: client, to: world:2001:db8::1, proto: TCP, port: 443, expect: allow}",
    want: skip("endpoint default/client has no IPv6 address"),
  },
  {
    name: "a connection to itself is skipped",
    query: "{from: web, to: web, proto: TCP, port: 22, expect: allow}",
    want: skip("a connection to itself never leaves its namespace"),
  },
];

describe("datapath plan: which queries run and how", () => {
  for (const c of CASES) {
    test(c.name, () => {
      const got = plans(`  - ${c.query}\n`);
      assert.deepEqual(got[got.length - 1], c.want);
    });
  }
});

describe("datapath plan: scenarios whose queries all skip", () => {
  const cases: { name: string; head: string; want: string | undefined }[] = [
    {
      name: "services are built (the agent takes services)",
      head: "name: s\nservices: [{name: db, selector: {app: db}, ports: [{port: 1}]}]\nendpoints: [{name: db, labels: {app: db}, ip: 10.0.1.10}]\n",
      want: undefined,
    },
    {
      name: "named ports used by a policy and declared by an endpoint are built (the agent takes endpoint ports)",
      head:
        "name: s\nendpoints: [{name: db, labels: {app: db}, ip: 10.0.1.10, ports: [{name: pg, port: 5432}]}]\n" +
        "policies: |\n  apiVersion: cilium.io/v2\n  kind: CiliumNetworkPolicy\n  metadata: {name: p, namespace: default}\n" +
        '  spec:\n    endpointSelector: {}\n    ingress: [{toPorts: [{ports: [{port: "pg"}]}]}]\n',
      want: undefined,
    },
    {
      name: "declared endpoint ports alone do not skip",
      head: "name: s\nendpoints: [{name: db, labels: {app: db}, ip: 10.0.1.10, ports: [{name: pg, port: 5432}]}]\n",
      want: undefined,
    },
    {
      name: "an endpoint on the pod CIDR's gateway address cannot be built",
      head: "name: s\nendpoints: [{name: a, labels: {a: a}, ip: 10.0.1.1}, {name: b, labels: {a: b}, ip: 10.0.1.9}]\n",
      want: "endpoint default/a's address 10.0.1.1 is the scratch node's gateway (first host of the pod CIDR 10.0.1.0/24)",
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const from = c.head.includes("name: db") ? "db" : "a";
      const s = parseScenario(
        `${c.head}queries: [{from: ${from}, to: host, proto: TCP, port: 1, expect: allow}]\n`,
        "t.yaml",
      );
      assert.equal(scenarioSkipReason(s), c.want);
    });
  }
});

describe("datapath plan: the scratch node's pod CIDRs", () => {
  const cases: { name: string; addrs: string[]; dual: boolean; want: Record<string, string> }[] = [
    {
      name: "one /24 holds addresses of one /24",
      addrs: ["10.0.1.10", "10.0.1.20"],
      dual: false,
      want: { podCidr4: "10.0.1.0/24", gateway4: "10.0.1.1" },
    },
    {
      name: "addresses of several /24s get the smallest prefix holding them all",
      addrs: ["10.0.1.10", "10.0.3.10", "10.0.2.20"],
      dual: false,
      want: { podCidr4: "10.0.0.0/22", gateway4: "10.0.0.1" },
    },
    {
      name: "dual stack adds an IPv6 pod CIDR of at least /64",
      addrs: ["10.0.1.10", "fd00::10", "fd00::20"],
      dual: true,
      want: { podCidr4: "10.0.1.0/24", gateway4: "10.0.1.1", podCidr6: "fd00::/64", gateway6: "fd00::1" },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const endpoints = [{ name: "x", namespace: "default", labels: {}, ips: c.addrs }];
      assert.deepEqual(nodeCidrs({ endpoints, config: { dualStack: c.dual } }), c.want);
    });
  }
  test("coveringPrefix of no address of the family is undefined", () => {
    assert.equal(coveringPrefix(["fd00::1"], 4, 24), undefined);
    const p = coveringPrefix(["192.168.0.1", "192.168.255.1"], 4, 24);
    assert.equal(p && prefixString(p), "192.168.0.0/16");
  });
});

describe("datapath verdicts: what the probe saw becomes allow, deny or a harness error", () => {
  const s = parseScenario(
    `${WORLD}queries:\n  - {from: world:203.0.113.1, to: web, proto: TCP, port: 22, expect: deny, how: drop}\n`,
    "t.yaml",
  );
  const q = s.queries[0];
  assert.ok(q);
  const session = new ScenarioSession({ world: s });
  const offline = compare(q, session.engine.decide(session.prepare(q, { prefix: "" })));
  const cases: {
    name: string;
    seen: { result: string; drop?: string };
    outcome: string;
    actual?: string;
    by0: string;
  }[] = [
    {
      name: "a timeout with the kernel's drop log is deny/drop",
      seen: { result: "timeout", drop: "mbr:d:e1:in:def" },
      outcome: "pass",
      actual: "deny",
      by0: "kernel: dropped (mbr:d:e1:in:def)",
    },
    {
      name: "an answer is allow",
      seen: { result: "ok" },
      outcome: "fail",
      actual: "allow",
      by0: "kernel: answered",
    },
    {
      name: "a timeout without a drop log is a harness error, not a deny",
      seen: { result: "timeout" },
      outcome: "fail",
      by0: "kernel: harness error: no answer within 400 ms and no drop logged: the packet was lost outside the policy",
    },
    {
      name: "connection refused is a harness error: the packet got through",
      seen: { result: "ECONNREFUSED" },
      outcome: "fail",
      by0: "kernel: harness error: connection refused: the packet got through but nothing listened",
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = observedResult(offline, c.seen, 400);
      assert.equal(r.outcome, c.outcome);
      assert.equal(r.actual, c.actual);
      assert.equal(r.decidedBy[0], c.by0);
      assert.deepEqual(r.offline, { verdict: "deny", how: "drop" });
      assert.equal(r.decidedBy[1], "engine: deny/drop (ingress: default deny (no rule allows))");
    });
  }
  test("skipped queries are counted apart from passed and failed", () => {
    const pass = observedResult(offline, { result: "timeout", drop: "x" }, 400);
    const fail = observedResult(offline, { result: "ok" }, 400);
    const { outcome: _o, ...rest } = pass;
    const skipped = { ...rest, outcome: "skip" as const };
    assert.deepEqual(
      countDatapath([
        { file: "a", results: [pass, fail, skipped, skipped] },
        { file: "b", results: [], error: { code: "SCENARIO_INVALID", message: "x", issues: [] } },
      ]),
      { passed: 1, failed: 2, skipped: 2 },
    );
  });
});
