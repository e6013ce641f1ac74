import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { formatIssue, isMembraneError } from "../../src/errors.js";
import { parseScenario } from "../../src/policy/scenario/index.js";

/** A valid scenario; cases replace lines of it. Line numbers below are 1-based. */
const BASE = [
  "name: base", //                                                    1
  "endpoints:", //                                                    2
  "  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}", // 3
  "  - {name: client, namespace: default, labels: {app: client}, ip: 10.0.1.20}", // 4
  "queries:", //                                                      5
  "  - {from: client, to: web, proto: TCP, port: 80, expect: allow}", // 6
];

function withLines(changes: Record<number, string>, extra: string[] = []): string {
  const lines = BASE.map((l, i) => changes[i + 1] ?? l);
  return [...lines, ...extra].join("\n") + "\n";
}

/** The issues of the SCENARIO_INVALID error as `file:line: path: message` lines. */
function issuesOf(text: string): string[] {
  try {
    parseScenario(text, "s.yaml");
  } catch (e) {
    assert.ok(isMembraneError(e), `expected a MembraneError, got ${String(e)}`);
    assert.equal(e.code, "SCENARIO_INVALID");
    return e.issues.map(formatIssue);
  }
  assert.fail("expected the scenario to be rejected");
}

interface Case {
  name: string;
  text: string;
  issues: string[];
}

const cases: Case[] = [
  {
    name: "unknown top-level field is an error naming its line",
    text: withLines({}, ["extra: 1"]),
    issues: [
      's.yaml:7: extra: unknown field "extra" (allowed: name, source, category, notes, config, namespaces, services, endpoints, nodes, policies, queries)',
    ],
  },
  {
    name: "missing name is an error",
    text: withLines({ 1: "source: x" }),
    issues: ['s.yaml:1: missing required field "name"'],
  },
  {
    name: "missing queries is an error",
    text: BASE.slice(0, 4).join("\n") + "\n",
    issues: ['s.yaml:1: missing required field "queries"'],
  },
  {
    name: "empty queries list is an error",
    text: withLines({ 5: "queries: []", 6: "" }),
    issues: ["s.yaml:5: queries: must list at least one query"],
  },
  {
    name: "unknown field in a query names the query index",
    text: withLines({
      6: "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, verdict: allow}",
    }),
    issues: [
      's.yaml:6: queries[0].verdict: unknown field "verdict" (allowed: from, to, proto, port, icmpType, http, kafka, tls, dnsQuery, dns, auth, expect, how, note)',
    ],
  },
  {
    name: "unknown endpoint in from names the query index and field",
    text: withLines({ 6: "  - {from: xwing, to: web, proto: TCP, port: 80, expect: allow}" }),
    issues: ['s.yaml:6: queries[0].from: no endpoint named "xwing" (known: default/web, default/client)'],
  },
  {
    name: "unknown endpoint in to with namespace/name names the field",
    text: withLines({ 6: "  - {from: client, to: prod/web, proto: TCP, port: 80, expect: allow}" }),
    issues: ['s.yaml:6: queries[0].to: no endpoint named "prod/web" (known: default/web, default/client)'],
  },
  {
    name: "ambiguous endpoint name asks for namespace/name",
    text: withLines({
      4: "  - {name: web, namespace: prod, ip: 10.0.2.10}",
      6: "  - {from: web, to: prod/web, proto: TCP, port: 80, expect: allow}",
    }),
    issues: [
      's.yaml:6: queries[0].from: endpoint name "web" is ambiguous (in namespaces default, prod); write namespace/name',
    ],
  },
  {
    name: "port out of range is an error with the value",
    text: withLines({ 6: "  - {from: client, to: web, proto: TCP, port: 70000, expect: allow}" }),
    issues: ["s.yaml:6: queries[0].port: must be between 1 and 65535, got 70000"],
  },
  {
    name: "port given as a string is an error",
    text: withLines({ 6: '  - {from: client, to: web, proto: TCP, port: "80", expect: allow}' }),
    issues: ['s.yaml:6: queries[0].port: must be an integer, got "80"'],
  },
  {
    name: "TCP query without port is an error",
    text: withLines({ 6: "  - {from: client, to: web, proto: TCP, expect: allow}" }),
    issues: ['s.yaml:6: queries[0]: missing required field "port" for TCP'],
  },
  {
    name: "ICMP query with a port is an error",
    text: withLines({ 6: "  - {from: client, to: web, proto: ICMP, port: 8, icmpType: 8, expect: allow}" }),
    issues: ["s.yaml:6: queries[0].port: ICMP has no ports; use icmpType"],
  },
  {
    name: "unknown protocol lists the allowed ones",
    text: withLines({ 6: "  - {from: client, to: web, proto: tcp, port: 80, expect: allow}" }),
    issues: [
      's.yaml:6: queries[0].proto: must be one of "TCP", "UDP", "SCTP", "ICMP", "ICMPv6", "VRRP", "IGMP", "GRE", "IPIP", "ESP", "AH", got "tcp"',
    ],
  },
  {
    name: "expect must be allow or deny",
    text: withLines({ 6: "  - {from: client, to: web, proto: TCP, port: 80, expect: drop}" }),
    issues: ['s.yaml:6: queries[0].expect: must be one of "allow", "deny", got "drop"'],
  },
  {
    name: "how on an allow expectation is an error",
    text: withLines({ 6: "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, how: drop}" }),
    issues: ['s.yaml:6: queries[0].how: "how" applies only to expect: deny'],
  },
  {
    name: "unknown how lists the allowed ones",
    text: withLines({ 6: "  - {from: client, to: web, proto: TCP, port: 80, expect: deny, how: reset}" }),
    issues: [
      's.yaml:6: queries[0].how: must be one of "drop", "http-403", "dns-refused", "kafka-denied", "tls-reset", "auth-required", got "reset"',
    ],
  },
  {
    name: "http request on UDP is an error",
    text: withLines({
      6: "  - {from: client, to: web, proto: UDP, port: 80, http: {method: GET, path: /}, expect: allow}",
    }),
    issues: ["s.yaml:6: queries[0]: http, kafka and tls requests need proto TCP"],
  },
  {
    name: "http request without path is an error",
    text: withLines({
      6: "  - {from: client, to: web, proto: TCP, port: 80, http: {method: GET}, expect: allow}",
    }),
    issues: ['s.yaml:6: queries[0].http: missing required field "path"'],
  },
  {
    name: "fqdn peer without any DNS answer is an error",
    text: withLines({ 6: "  - {from: client, to: 'fqdn:api.x.com', proto: TCP, port: 443, expect: allow}" }),
    issues: [
      "s.yaml:6: queries[0].to: no DNS answer for \"api.x.com\" seen before this query (a query's dns: lists every answer seen so far; without dns: the previous query's set holds); add {name: api.x.com, ips: [...]} to its dns:",
    ],
  },
  {
    name: "fc: dns: [] means no answer seen: a later fqdn peer is an error",
    text: withLines(
      {
        6: "  - {from: client, to: 'fqdn:api.x.com', proto: TCP, port: 443, expect: allow, dns: [{name: api.x.com, ips: [1.2.3.4]}]}",
      },
      [
        "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, dns: []}",
        "  - {from: client, to: 'fqdn:api.x.com', proto: TCP, port: 443, expect: deny}",
      ],
    ),
    issues: [
      "s.yaml:8: queries[2].to: no DNS answer for \"api.x.com\" seen before this query (a query's dns: lists every answer seen so far; without dns: the previous query's set holds); add {name: api.x.com, ips: [...]} to its dns:",
    ],
  },
  {
    name: "world peer with a bad address is an error",
    text: withLines({ 6: "  - {from: client, to: 'world:1.2.3', proto: TCP, port: 443, expect: allow}" }),
    issues: ['s.yaml:6: queries[0].to: "1.2.3" is not an IP address (in "world:1.2.3")'],
  },
  {
    name: "unknown peer kind is an error",
    text: withLines({ 6: "  - {from: client, to: 'pod:web', proto: TCP, port: 443, expect: allow}" }),
    issues: [
      's.yaml:6: queries[0].to: unknown peer kind "pod:"; expected an endpoint name, namespace/name, host, world:<ip>, cidr:<ip>, remote-node:<ip>, kube-apiserver:<ip> or fqdn:<name>',
    ],
  },
  {
    name: "dns answer by an unknown endpoint is an error",
    text: withLines({
      6: "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, dns: [{name: a.com, ips: [1.1.1.1], by: ghost}]}",
    }),
    issues: [
      's.yaml:6: queries[0].dns[0].by: no endpoint named "ghost" (known: default/web, default/client)',
    ],
  },
  {
    name: "endpoint without ip is an error",
    text: withLines({ 4: "  - {name: client, namespace: default}" }),
    issues: ['s.yaml:4: endpoints[1]: missing required field "ip"'],
  },
  {
    name: "endpoint label imitating the namespace label is rejected",
    text: withLines({ 4: "  - {name: client, labels: {io.kubernetes.pod.namespace: prod}, ip: 10.0.1.20}" }),
    issues: [
      's.yaml:4: endpoints[1].labels.io.kubernetes.pod.namespace: label key "io.kubernetes.pod.namespace" is derived by Membrane (io.kubernetes.*, io.cilium.*) and cannot be set',
    ],
  },
  {
    name: "endpoint label with a reserved source prefix is rejected",
    text: withLines({ 4: "  - {name: client, labels: {'reserved:host': ''}, ip: 10.0.1.20}" }),
    issues: [
      's.yaml:4: endpoints[1].labels.reserved:host: label key "reserved:host" has a source prefix; workload labels are plain keys',
    ],
  },
  {
    name: "endpoint label value that is a number must be quoted",
    text: withLines({ 4: "  - {name: client, labels: {version: 2}, ip: 10.0.1.20}" }),
    issues: ["s.yaml:4: endpoints[1].labels.version: must be a string, got number 2 (quote it)"],
  },
  {
    name: "duplicate endpoint names in one namespace are an error",
    text: withLines({
      4: "  - {name: web, namespace: default, ip: 10.0.1.20}",
      6: "  - {from: host, to: 'world:1.1.1.1', proto: TCP, port: 80, expect: allow}",
    }),
    issues: ['s.yaml:4: endpoints[1]: endpoint "default/web" is defined twice (first on line 3)'],
  },
  {
    name: "two endpoints with one address are an error",
    text: withLines({ 4: "  - {name: client, ip: 10.0.1.10}" }),
    issues: ["s.yaml:4: endpoints[1]: address 10.0.1.10 is already used by endpoint default/web"],
  },
  {
    name: "ipv6 address without dualStack is an error",
    text: withLines({ 4: "  - {name: client, ip: 10.0.1.20, ipv6: 'fd00::20'}" }),
    issues: ["s.yaml:4: endpoints[1].ipv6: an ipv6 address needs config.dualStack: true"],
  },
  {
    name: "unknown config field is an error",
    text: withLines({}, ["config: {enforcement: always}"]),
    issues: [
      's.yaml:7: config.enforcement: unknown field "enforcement" (allowed: policyEnforcementMode, allowLocalhost, policyCIDRMatchMode, dualStack, enableICMPRules, meshAuth, cluster, fqdnMinTTL, nodeLabels)',
    ],
  },
  {
    name: "bad enforcement mode lists the allowed ones",
    text: withLines({}, ["config:", "  policyEnforcementMode: strict"]),
    issues: [
      's.yaml:8: config.policyEnforcementMode: must be one of "default", "always", "never", got "strict"',
    ],
  },
  {
    name: "several problems are reported together",
    text: withLines({
      3: "  - {name: web, ip: 300.0.0.1}",
      6: "  - {from: client, to: web, proto: TCP, port: 0, expect: maybe}",
    }),
    issues: [
      's.yaml:3: endpoints[0].ip: "300.0.0.1" is not an IP address',
      's.yaml:6: queries[0].expect: must be one of "allow", "deny", got "maybe"',
      "s.yaml:6: queries[0].port: must be between 1 and 65535, got 0",
    ],
  },
  {
    name: "duplicate keys are a YAML error with the line",
    text: withLines({}, ["name: again"]),
    issues: ["s.yaml:7: Map keys must be unique at line 7, column 1:"],
  },
];

describe("scenario loader rejects invalid files with file, line and field path", () => {
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(issuesOf(c.text), c.issues);
    });
  }
});

describe("scenario loader accepts valid files", () => {
  test("a minimal scenario loads with defaults", () => {
    const s = parseScenario(withLines({}), "s.yaml");
    assert.equal(s.name, "base");
    assert.equal(s.endpoints.length, 2);
    assert.deepEqual(s.endpoints[0], {
      name: "web",
      namespace: "default",
      labels: { app: "web" },
      ips: ["10.0.1.10"],
    });
    assert.deepEqual(s.queries[0], {
      index: 0,
      line: 6,
      from: "client",
      to: "web",
      proto: "TCP",
      port: 80,
      expect: "allow",
    });
    assert.deepEqual(s.policies, []);
    assert.deepEqual(s.config, {});
  });

  test("a dnsQuery without port defaults to port 53", () => {
    const s = parseScenario(
      withLines({
        6: "  - {from: client, to: web, proto: UDP, dnsQuery: a.com, expect: deny, how: dns-refused}",
      }),
      "s.yaml",
    );
    assert.equal(s.queries[0]?.port, 53);
    assert.equal(s.queries[0]?.how, "dns-refused");
  });

  test("an fqdn peer may use an answer of an earlier query", () => {
    const s = parseScenario(
      withLines({}, [
        "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, dns: [{name: A.x.com., ips: [1.2.3.4]}]}",
        "  - {from: client, to: 'fqdn:a.x.com', proto: TCP, port: 443, expect: deny}",
      ]),
      "s.yaml",
    );
    assert.equal(s.queries[2]?.to, "fqdn:a.x.com");
  });

  test("world mode makes name and queries optional", () => {
    const s = parseScenario(BASE.slice(1, 4).join("\n"), "w.yaml", { world: true });
    assert.equal(s.name, "");
    assert.deepEqual(s.queries, []);
  });

  test("config values are carried to the engine config", () => {
    const s = parseScenario(
      withLines({}, [
        "config: {policyEnforcementMode: always, allowLocalhost: policy, dualStack: true, meshAuth: true}",
      ]),
      "s.yaml",
    );
    assert.deepEqual(s.config, {
      policyEnforcementMode: "always",
      allowLocalhost: "policy",
      dualStack: true,
      meshAuth: true,
    });
  });
});

describe("policy errors inside the policies block point at lines of the scenario file", () => {
  test("an invalid policy field is reported at its line in the scenario file", () => {
    const text = withLines({}, [
      "policies: |", //                                     7
      "  apiVersion: cilium.io/v2", //                      8
      "  kind: CiliumNetworkPolicy", //                     9
      "  metadata: {name: p, namespace: default}", //      10
      "  spec:", //                                         11
      "    endpointSelector: {matchLabels: {app: web}}", // 12
      "    ingress:", //                                    13
      "      - fromEndpoints: [{matchLabels: {app: client}}]", // 14
      "        toPorts: [{ports: [{port: '99999', protocol: TCP}]}]", // 15
    ]);
    const issues = issuesOf(text);
    assert.equal(issues.length, 1);
    assert.match(
      issues[0] ?? "",
      /^s\.yaml:15: policies: spec\.ingress\[0\]\.toPorts\[0\]\.ports\[0\]\.port: /,
    );
  });
});
