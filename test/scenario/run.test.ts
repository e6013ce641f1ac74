import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MembraneError, isMembraneError } from "../../src/errors.js";
import type { DnsAnswer, TraceResult } from "../../src/policy/engine.js";
import type { Decision, DirectionDecision, EndpointSpec, FlowQuery } from "../../src/policy/query.js";
import type { RuleOrigin } from "../../src/policy/types.js";
import {
  type EngineLike,
  explainDecision,
  parseScenario,
  runScenario,
  runScenarioText,
} from "../../src/policy/scenario/index.js";

/** Records what the runner asks and answers with a scripted decision. */
class FakeEngine implements EngineLike {
  calls: string[] = [];
  flows: FlowQuery[] = [];
  endpoints: EndpointSpec[] = [];
  constructor(private readonly answer: (q: FlowQuery) => Decision = () => decision("allow")) {}
  setNamespace(name: string): void {
    this.calls.push(`ns ${name}`);
  }
  upsertEndpoint(spec: EndpointSpec): never {
    this.endpoints.push(spec);
    this.calls.push(`ep ${spec.namespace}/${spec.name}`);
    return undefined as never;
  }
  upsertService(): void {}
  setNodeAddress(ip: string, kind: string): void {
    this.calls.push(`node ${ip} ${kind}`);
  }
  observeDns(a: DnsAnswer): void {
    this.calls.push(`dns ${a.name} ${a.ips.join(",")} by=${a.by ? `${a.by.namespace}/${a.by.name}` : "-"}`);
  }
  forgetDns(name: string, ip: string): void {
    this.calls.push(`forget ${name} ${ip}`);
  }
  /** Endpoints (namespace/name) whose DNS the fake's proxy does not see. */
  unseen = new Set<string>();
  dnsLookupSeen(by: { namespace: string; name: string }): boolean {
    return !this.unseen.has(`${by.namespace}/${by.name}`);
  }
  upsertPolicy(): void {}
  decide(q: FlowQuery): Decision {
    this.calls.push("decide");
    this.flows.push(q);
    return this.answer(q);
  }
  trace(q: FlowQuery): TraceResult {
    return { decision: this.decide(q), steps: [] };
  }
}

function dir(direction: "ingress" | "egress", over: Partial<DirectionDecision> = {}): DirectionDecision {
  return {
    direction,
    endpoint: direction === "ingress" ? "default/web" : "default/client",
    enforced: true,
    verdict: "allow",
    remoteIdentity: 256,
    decidedBy: [],
    matchType: "L3-L4",
    ...over,
  };
}

function decision(verdict: "allow" | "deny", over: Partial<Decision> = {}): Decision {
  return {
    verdict,
    egress: dir("egress"),
    ingress: dir("ingress"),
    srcIdentity: 256,
    dstIdentity: 257,
    ...over,
  };
}

const origin = (name: string, path: string, deny = false): RuleOrigin => ({
  policy: { kind: "CiliumNetworkPolicy", name, namespace: "default" },
  path,
  deny,
});

const WORLD = [
  "name: t",
  "endpoints:",
  "  - {name: web, namespace: default, labels: {app: web}, ip: 10.0.1.10}",
  "  - {name: client, namespace: default, labels: {app: client}, ip: 10.0.1.20}",
  "  - {name: checker, namespace: kube-system, kind: health, ip: 10.0.1.99}",
  "queries:",
];

function run(queries: string[], engine = new FakeEngine()) {
  const s = parseScenario([...WORLD, ...queries].join("\n"), "t.yaml");
  const result = runScenario(s, { engineFactory: () => engine });
  return { result, engine };
}

describe("scenario runner translates queries for the engine", () => {
  test("an endpoint name becomes an endpoint peer with its namespace", () => {
    const { engine } = run([
      "  - {from: client, to: kube-system/checker, proto: TCP, port: 80, expect: allow}",
    ]);
    assert.deepEqual(engine.flows[0], {
      from: { kind: "endpoint", name: "client", namespace: "default" },
      to: { kind: "endpoint", name: "checker", namespace: "kube-system" },
      proto: "TCP",
      port: 80,
    });
  });

  test("world: and cidr: peers become ip peers", () => {
    const { engine } = run([
      "  - {from: 'world:1.2.3.4', to: web, proto: TCP, port: 80, expect: allow}",
      "  - {from: web, to: 'cidr:2001:db8::1', proto: UDP, port: 53, expect: allow}",
    ]);
    assert.deepEqual(engine.flows[0]?.from, { kind: "ip", ip: "1.2.3.4" });
    assert.deepEqual(engine.flows[1]?.to, { kind: "ip", ip: "2001:db8::1" });
  });

  test("host becomes the host peer", () => {
    const { engine } = run(["  - {from: host, to: web, proto: TCP, port: 80, expect: allow}"]);
    assert.deepEqual(engine.flows[0]?.from, { kind: "host" });
  });

  test("remote-node and kube-apiserver peers register the node address before the decision", () => {
    const { engine } = run([
      "  - {from: 'remote-node:192.168.1.2', to: web, proto: TCP, port: 80, expect: allow}",
      "  - {from: web, to: 'kube-apiserver:10.0.0.1', proto: TCP, port: 6443, expect: allow}",
    ]);
    const tail = engine.calls.filter((c) => c.startsWith("node") || c === "decide");
    assert.deepEqual(tail, [
      "node 192.168.1.2 remote-node",
      "decide",
      "node 10.0.0.1 kube-apiserver",
      "decide",
    ]);
    assert.deepEqual(engine.flows[1]?.to, { kind: "ip", ip: "10.0.0.1" });
  });

  test("health endpoints are passed with kind health, namespaces are created for every endpoint", () => {
    const { engine } = run(["  - {from: client, to: web, proto: TCP, port: 80, expect: allow}"]);
    assert.equal(engine.endpoints[2]?.kind, "health");
    assert.deepEqual(engine.calls.slice(0, 2), ["ns default", "ns kube-system"]);
  });

  test("dns answers are observed before the decision, asked by from unless by says otherwise", () => {
    const { engine } = run([
      "  - {from: client, to: web, proto: TCP, port: 80, expect: allow,",
      "     dns: [{name: a.com, ips: [1.1.1.1]}, {name: b.com, ips: [2.2.2.2], by: web}]}",
      "  - {from: client, to: web, proto: TCP, port: 80, expect: allow}",
    ]);
    assert.deepEqual(
      engine.calls.filter((c) => c.startsWith("dns") || c === "decide"),
      ["dns a.com 1.1.1.1 by=default/client", "dns b.com 2.2.2.2 by=default/web", "decide", "decide"],
    );
  });

  test("fc: a query's dns is the complete set seen so far: answers it leaves out are forgotten, [] forgets all", () => {
    const { engine } = run([
      "  - {from: client, to: web, proto: TCP, port: 80, expect: allow,",
      "     dns: [{name: a.com, ips: [1.1.1.1, 1.1.1.2]}, {name: b.com, ips: [2.2.2.2]}]}",
      "  - {from: client, to: web, proto: TCP, port: 80, expect: allow,",
      "     dns: [{name: A.com., ips: [1.1.1.2]}, {name: c.com, ips: [3.3.3.3]}]}",
      "  - {from: client, to: web, proto: TCP, port: 80, expect: allow, dns: []}",
    ]);
    assert.deepEqual(
      engine.calls.filter((c) => c.startsWith("dns") || c.startsWith("forget") || c === "decide"),
      [
        "dns a.com 1.1.1.1,1.1.1.2 by=default/client",
        "dns b.com 2.2.2.2 by=default/client",
        "decide",
        "forget a.com 1.1.1.1",
        "forget b.com 2.2.2.2",
        "dns c.com 3.3.3.3 by=default/client",
        "decide",
        "forget a.com 1.1.1.2",
        "forget c.com 3.3.3.3",
        "decide",
      ],
    );
  });

  test("fc: answers the DNS proxy did not see (no endpoint asked, or its DNS is not proxied) are not learned", () => {
    const engine = new FakeEngine();
    engine.unseen.add("default/web");
    run(
      [
        "  - {from: host, to: web, proto: TCP, port: 80, expect: allow, dns: [{name: c.com, ips: [3.3.3.3]}]}",
        "  - {from: client, to: web, proto: TCP, port: 80, expect: allow,",
        "     dns: [{name: c.com, ips: [3.3.3.3], by: web}, {name: d.com, ips: [4.4.4.4]}]}",
      ],
      engine,
    );
    assert.deepEqual(
      engine.calls.filter((c) => c.startsWith("dns") || c.startsWith("forget") || c === "decide"),
      ["decide", "dns d.com 4.4.4.4 by=default/client", "decide"],
    );
  });

  test("an fqdn peer is the first address of the answer; a query without dns keeps the earlier answers", () => {
    const { engine } = run([
      "  - {from: client, to: 'fqdn:api.x.com', proto: TCP, port: 443, expect: allow,",
      "     dns: [{name: API.x.com., ips: [5.5.5.5, 6.6.6.6]}]}",
      "  - {from: client, to: 'fqdn:api.x.com', proto: TCP, port: 80, expect: allow}",
    ]);
    assert.deepEqual(engine.flows[0]?.to, { kind: "ip", ip: "5.5.5.5" });
    assert.deepEqual(engine.flows[1]?.to, { kind: "ip", ip: "5.5.5.5" });
  });

  test("L7 fields, icmp type and auth are passed through", () => {
    const { engine } = run([
      "  - {from: client, to: web, proto: TCP, port: 80, http: {method: GET, path: /x, headers: {X-A: b}}, auth: true, expect: allow}",
      "  - {from: client, to: web, proto: ICMP, icmpType: 8, expect: allow}",
      "  - {from: client, to: web, proto: TCP, port: 9092, kafka: {apiKey: produce, topic: t}, expect: allow}",
    ]);
    assert.deepEqual(engine.flows[0]?.http, { method: "GET", path: "/x", headers: { "X-A": "b" } });
    assert.equal(engine.flows[0]?.auth, true);
    assert.deepEqual(
      { proto: engine.flows[1]?.proto, icmpType: engine.flows[1]?.icmpType },
      { proto: "ICMP", icmpType: 8 },
    );
    assert.deepEqual(engine.flows[2]?.kafka, { apiKey: "produce", topic: "t" });
  });
});

describe("scenario runner compares verdicts", () => {
  const cases: { name: string; query: string; answer: Decision; pass: boolean }[] = [
    {
      name: "allow expected and given passes",
      query: "expect: allow",
      answer: decision("allow"),
      pass: true,
    },
    {
      name: "allow expected, deny given fails",
      query: "expect: allow",
      answer: decision("deny", { how: "drop" }),
      pass: false,
    },
    {
      name: "deny without how passes on any deny",
      query: "expect: deny",
      answer: decision("deny", { how: "http-403" }),
      pass: true,
    },
    {
      name: "deny with how passes when how matches",
      query: "expect: deny, how: drop",
      answer: decision("deny", { how: "drop" }),
      pass: true,
    },
    {
      name: "deny with how fails when how differs",
      query: "expect: deny, how: http-403",
      answer: decision("deny", { how: "drop" }),
      pass: false,
    },
    {
      name: "deny expected, allow given fails",
      query: "expect: deny",
      answer: decision("allow"),
      pass: false,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const { result } = run(
        [`  - {from: client, to: web, proto: TCP, port: 80, ${c.query}}`],
        new FakeEngine(() => c.answer),
      );
      assert.equal(result.results[0]?.pass, c.pass);
      assert.equal(result.results[0]?.actual, c.answer.verdict);
    });
  }

  test("a result carries the query, the verdicts and the note", () => {
    const { result } = run(
      [
        "  - {from: client, to: web, proto: TCP, port: 80, http: {method: PUT, path: /a}, expect: deny, how: http-403, note: why}",
      ],
      new FakeEngine(() =>
        decision("deny", {
          how: "http-403",
          ingress: dir("ingress", {
            verdict: "deny",
            reason: "l7-denied",
            decidedBy: [origin("rule1", "spec.ingress[0]")],
            l7: { parser: "http", verdict: "deny" },
          }),
        }),
      ),
    );
    assert.deepEqual(result.results[0], {
      index: 0,
      line: 7,
      from: "client",
      to: "web",
      proto: "TCP",
      port: 80,
      l7: "PUT /a",
      expect: "deny",
      expectHow: "http-403",
      actual: "deny",
      actualHow: "http-403",
      pass: true,
      decidedBy: ["ingress: http rules of default/rule1 spec.ingress[0] refused the request"],
      note: "why",
    });
  });
});

describe("explainDecision names the deciding rules", () => {
  const cases: { name: string; d: Decision; want: string[] }[] = [
    {
      name: "default deny on ingress",
      d: decision("deny", {
        how: "drop",
        ingress: dir("ingress", { verdict: "deny", reason: "default-deny" }),
      }),
      want: ["ingress: default deny (no rule allows)"],
    },
    {
      name: "a deny rule on egress wins the explanation",
      d: decision("deny", {
        how: "drop",
        egress: dir("egress", {
          verdict: "deny",
          reason: "policy-denied",
          decidedBy: [origin("d", "spec.egressDeny[1]", true)],
        }),
      }),
      want: ["egress: deny rule default/d spec.egressDeny[1]"],
    },
    {
      name: "authentication required",
      d: decision("deny", {
        how: "auth-required",
        ingress: dir("ingress", {
          verdict: "deny",
          reason: "auth-required",
          decidedBy: [origin("a", "spec.ingress[0]")],
        }),
      }),
      want: ["ingress: authentication required by default/a spec.ingress[0]"],
    },
    {
      name: "allow lists the enforced directions' rules",
      d: decision("allow", {
        egress: dir("egress", { enforced: false }),
        ingress: dir("ingress", {
          decidedBy: [origin("r", "spec.ingress[0]"), origin("s", "specs[1].ingress[2]")],
        }),
      }),
      want: ["ingress: default/r spec.ingress[0], default/s specs[1].ingress[2]"],
    },
    {
      name: "allow with nothing enforced says so",
      d: decision("allow", {
        egress: dir("egress", { enforced: false }),
        ingress: dir("ingress", { enforced: false }),
      }),
      want: ["no policy enforced on either side"],
    },
  ];
  for (const c of cases) test(c.name, () => assert.deepEqual(explainDecision(c.d), c.want));
});

describe("scenario runner reports errors per file", () => {
  test("an invalid file becomes an error result and does not throw", () => {
    const r = runScenarioText("name: x\nqueries: []\nbogus: 1\n", "bad.yaml");
    assert.equal(r?.error?.code, "SCENARIO_INVALID");
    assert.equal(r?.results.length, 0);
    assert.deepEqual(
      r?.error?.issues.map((i) => `${i.line}: ${i.message}`),
      [
        "2: must list at least one query",
        '3: unknown field "bogus" (allowed: name, source, category, notes, config, namespaces, services, endpoints, nodes, policies, queries)',
      ],
    );
  });

  test("a scenario whose name does not match the filter is skipped", () => {
    const r = runScenarioText(
      [...WORLD, "  - {from: client, to: web, proto: TCP, port: 80, expect: allow}"].join("\n"),
      "t.yaml",
      {
        filter: (n) => n === "other",
        engineFactory: () => new FakeEngine(),
      },
    );
    assert.equal(r, undefined);
  });

  test("an engine error on an endpoint names the endpoint's line", () => {
    const engine = new FakeEngine();
    engine.upsertEndpoint = (spec: EndpointSpec): never => {
      throw new MembraneError("LABEL_INVALID", `Cannot use ${spec.name}: bad`);
    };
    try {
      run(["  - {from: client, to: web, proto: TCP, port: 80, expect: allow}"], engine);
      assert.fail("expected an error");
    } catch (e) {
      assert.ok(isMembraneError(e));
      assert.equal(e.code, "LABEL_INVALID");
      assert.equal(e.message, "Cannot load endpoint default/web: Cannot use web: bad");
      assert.deepEqual(e.location, { file: "t.yaml", line: 3 });
    }
  });

  test("an unexpected engine failure becomes an INTERNAL error result with its stack", () => {
    const r = runScenarioText(
      [...WORLD, "  - {from: client, to: web, proto: TCP, port: 80, expect: allow}"].join("\n"),
      "t.yaml",
      {
        engineFactory: () =>
          new FakeEngine(() => {
            throw new Error("boom");
          }),
      },
    );
    assert.equal(r?.error?.code, "INTERNAL");
    assert.equal(r?.error?.message, "Cannot run scenario: internal error: boom");
    assert.ok(r?.error?.stack?.includes("boom"));
    assert.equal(r?.name, "t");
  });
});
