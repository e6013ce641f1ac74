/**
 * `policy test --datapath` L7 runs without the kernel: how a scenario's DNS
 * answers reach the agent, and how an L7 answer becomes a verdict.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseScenario } from "../../src/policy/scenario/load.js";
import { ScenarioSession } from "../../src/policy/scenario/session.js";
import { nodeCidrs } from "../../src/scenario/datapath-plan.js";
import { feedText, planDnsFeeds } from "../../src/scenario/datapath-dns-feed.js";
import { observedResult } from "../../src/scenario/datapath-verdict.js";
import type { QueryResult } from "../../src/policy/scenario/types.js";
import { WORLD } from "./datapath-l7-world.js";

describe("datapath DNS feeds: a scenario's DNS answers reach the agent through the proxy when they can", () => {
  const cases: { name: string; query: string; index?: number; want: string[] }[] = [
    {
      name: "an answer the asker's DNS rule lets through is asked from the resolver through the proxy",
      query:
        "{from: client, to: web, proto: TCP, port: 80, dns: [{name: x.example.com, ips: [192.0.2.1]}], expect: allow}",
      want: [
        "dns: x.example.com -> 192.0.2.1 asked by default/client through the DNS proxy (resolver kube-system/kube-dns)",
      ],
    },
    {
      name: "fc: a name the asker's DNS rules refuse is not given to the agent (the proxy sees no answer)",
      query:
        "{from: client, to: web, proto: TCP, port: 80, dns: [{name: x.test, ips: [192.0.2.2]}], expect: allow}",
      want: [
        "dns: x.test -> 192.0.2.2 not learned: the DNS proxy does not see default/client's lookup (no DNS rule of its egress policy lets x.test through)",
      ],
    },
    {
      name: "fc: an asker named by `by` without DNS rules is not given to the agent",
      query:
        "{from: client, to: web, proto: TCP, port: 80, dns: [{name: y.example.com, ips: [192.0.2.3], by: other}], expect: allow}",
      want: [
        "dns: y.example.com -> 192.0.2.3 not learned: the DNS proxy does not see default/other's lookup (no DNS rule of its egress policy lets y.example.com through)",
      ],
    },
    {
      name: "fc: an answer no endpoint asked is not given to the agent",
      query:
        "{from: world:192.0.2.9, to: web, proto: TCP, port: 22, dns: [{name: z.example.com, ips: [192.0.2.4]}], expect: deny}",
      want: [
        "dns: z.example.com -> 192.0.2.4 not learned: no endpoint of the node asked (the query's source is not an endpoint)",
      ],
    },
    {
      name: "fc: answers a later query's dns leaves out are forgotten; dns: [] forgets all",
      query:
        "{from: client, to: web, proto: TCP, port: 80, dns: [{name: x.example.com, ips: [192.0.2.1]}], expect: allow}\n" +
        "  - {from: client, to: web, proto: TCP, port: 80, dns: [], expect: allow}",
      index: 1,
      want: ["dns: x.example.com -> 192.0.2.1 forgotten (no longer in the query's dns)"],
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const s = parseScenario(`${WORLD}queries:\n  - ${c.query}\n`, "t.yaml");
      const session = new ScenarioSession({ world: s });
      for (const q of s.queries.slice(0, (c.index ?? 0) + 1)) session.prepare(q, { prefix: "" });
      const feeds = planDnsFeeds(session.dnsChange(), { scenario: s, cidrs: nodeCidrs(s) }, (f) =>
        session.engine.decide(f),
      );
      assert.deepEqual(feeds.map(feedText), c.want);
    });
  }
});

describe("datapath verdicts: L7 answers", () => {
  const offline = (expect: "allow" | "deny", how?: QueryResult["expectHow"]): QueryResult => ({
    index: 0,
    from: "client",
    to: "web",
    proto: "TCP",
    port: 80,
    expect,
    ...(how !== undefined ? { expectHow: how } : {}),
    actual: expect,
    ...(how !== undefined ? { actualHow: how } : {}),
    pass: true,
    decidedBy: ["ingress: default/web spec.ingress[0]"],
  });
  const R = "mbr:p:e1:in:r2";
  const cases: {
    name: string;
    o: QueryResult;
    plan: Parameters<typeof observedResult>[3];
    seen: { result: string; drop?: string; redirect?: string };
    want: string;
  }[] = [
    {
      name: "HTTP 200 through the proxy is allow",
      o: offline("allow"),
      plan: { kind: "http", proxied: "http" },
      seen: { result: "200", redirect: R },
      want: "pass allow - kernel: redirected to the proxy (mbr:p:e1:in:r2); HTTP 200",
    },
    {
      name: "HTTP 403 is deny/http-403",
      o: offline("deny", "http-403"),
      plan: { kind: "http", proxied: "http" },
      seen: { result: "403", redirect: R },
      want: "pass deny http-403 kernel: redirected to the proxy (mbr:p:e1:in:r2); HTTP 403",
    },
    {
      name: "a Kafka error 29 is deny/kafka-denied",
      o: offline("deny", "kafka-denied"),
      plan: { kind: "kafka", kafka: { apiKey: 0, apiVersion: 3 }, proxied: "kafka" },
      seen: { result: "denied", redirect: R },
      want: "pass deny kafka-denied kernel: redirected to the proxy (mbr:p:e1:in:r2); Kafka TOPIC_AUTHORIZATION_FAILED",
    },
    {
      name: "a closed connection is a Kafka denial only for ApiVersions (no error answer exists)",
      o: offline("deny", "kafka-denied"),
      plan: { kind: "kafka", kafka: { apiKey: 18, apiVersion: 0 }, proxied: "kafka" },
      seen: { result: "closed", redirect: R },
      want: "pass deny kafka-denied kernel: redirected to the proxy (mbr:p:e1:in:r2); Kafka ApiVersions refused: connection closed",
    },
    {
      name: "a closed connection after a Produce is a harness error",
      o: offline("deny", "kafka-denied"),
      plan: { kind: "kafka", kafka: { apiKey: 0, apiVersion: 3 }, proxied: "kafka" },
      seen: { result: "closed", redirect: R },
      want: "fail - - kernel: harness error: closed",
    },
    {
      name: "a TLS reset is deny/tls-reset",
      o: offline("deny", "tls-reset"),
      plan: { kind: "tls", proxied: "tls" },
      seen: { result: "reset", redirect: R },
      want: "pass deny tls-reset kernel: redirected to the proxy (mbr:p:e1:in:r2); TLS connection reset",
    },
    {
      name: "f7 plain bytes reset on a serverNames port are deny/tls-reset",
      o: offline("deny", "tls-reset"),
      plan: { kind: "tcp", proxied: "tls" },
      seen: { result: "reset", redirect: R },
      want: "pass deny tls-reset kernel: redirected to the proxy (mbr:p:e1:in:r2); plain bytes instead of a ClientHello: reset",
    },
    {
      name: "REFUSED is deny/dns-refused; an answer with addresses is allow",
      o: offline("deny", "dns-refused"),
      plan: { kind: "dns", proxied: "dns" },
      seen: { result: "REFUSED", redirect: R },
      want: "pass deny dns-refused kernel: redirected to the proxy (mbr:p:e1:in:r2); DNS REFUSED",
    },
    {
      name: "a SERVFAIL is a harness error, not a verdict",
      o: offline("allow"),
      plan: { kind: "dns", proxied: "dns" },
      seen: { result: "SERVFAIL", redirect: R },
      want: "fail - - kernel: harness error: SERVFAIL",
    },
    {
      name: "an L7 request timing out with a drop log is deny/drop (no redirect needed)",
      o: offline("deny", "drop"),
      plan: { kind: "http" },
      seen: { result: "timeout", drop: "mbr:d:e1:in:def" },
      want: "pass deny drop kernel: dropped (mbr:d:e1:in:def)",
    },
    {
      name: "a 403 where a drop is expected fails: the how differs",
      o: offline("deny", "drop"),
      plan: { kind: "http", proxied: "http" },
      seen: { result: "403", redirect: R },
      want: "fail deny http-403 kernel: redirected to the proxy (mbr:p:e1:in:r2); HTTP 403",
    },
    {
      name: "an answer the engine says the proxy gives, without the kernel's redirect, fails",
      o: offline("allow"),
      plan: { kind: "http", proxied: "http" },
      seen: { result: "200" },
      want: "fail allow - kernel: HTTP 200; NOT redirected to the proxy, though the engine says the http proxy handles it",
    },
    {
      name: "a redirect the engine does not expect fails",
      o: offline("allow"),
      plan: { kind: "connect" },
      seen: { result: "ok", redirect: R },
      want: "fail allow - kernel: redirected to the proxy (mbr:p:e1:in:r2); connected; the engine says no proxy handles it",
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const r = observedResult(c.o, c.seen, 400, c.plan);
      assert.equal(`${r.outcome} ${r.actual ?? "-"} ${r.actualHow ?? "-"} ${r.decidedBy[0] ?? ""}`, c.want);
    });
  }
});
