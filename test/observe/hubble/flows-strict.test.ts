/**
 * Every kind of flow Membrane produces, written as `-o json` and by the
 * exporter, read strictly with Hubble's schema (unknown fields refused, as
 * Go's protojson): kernel verdicts of every reason, the drop events beside
 * policy denials, the proxy's HTTP/DNS/Kafka/TLS flows, lost events, and the
 * shared samples. The agent tests with real traffic check their flows too
 * (test/agent/flows.test.ts, test/agent/e2e/l7.test.ts).
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { dropEventOf } from "../../../src/observe/drop-event.js";
import { FlowEnricher } from "../../../src/observe/enrich.js";
import { FlowExporter } from "../../../src/observe/export.js";
import type { Flow, FlowRecord } from "../../../src/observe/flow.js";
import { l7Flow } from "../../../src/observe/l7flow.js";
import type { NflogEvent } from "../../../src/observe/nflog-msg.js";
import { formatJson } from "../../../src/observe/printer.js";
import { FlowRing } from "../../../src/observe/ring.js";
import type { L7Event } from "../../../src/proxy/types.js";
import { icmpHeader, ipv4, ipv6, LOOKUP, tcpHeader, udpHeader } from "../fixtures.js";
import { SAMPLES } from "../samples.js";
import { assertHubbleStrict, parseHubbleStrict } from "./strict.js";

const T = Date.UTC(2024, 10, 23, 12, 0, 1, 123) + 0.456;
const syn = ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(43210, 80, 0x02));
const ev = (prefix: string, packet: Buffer, mark?: number): NflogEvent => ({
  prefix,
  packet,
  timestampMs: T,
  ...(mark === undefined ? {} : { mark }),
});

/** One event per prefix kind: allow, redirect, deny rule, default deny, spoof, invalid, audit, groups; v4/v6, TCP/UDP/ICMP. */
function kernelFlows(): Flow[] {
  const e = new FlowEnricher({ lookup: LOOKUP, nodeName: "node1" });
  const events = [
    ev("mbr:a:e12:in:r7", syn),
    ev("mbr:p:e12:in:r7", syn),
    ev("mbr:a:g5:in:r7", syn),
    ev("mbr:d:e12:in:r7", syn),
    ev("mbr:d:e13:out:r7", syn),
    ev("mbr:d:e12:in:r99", syn),
    ev("mbr:d:e12:in:def", syn),
    ev("mbr:d:e12:in:def", Buffer.from([0x45, 0, 0])),
    ev("mbr:d:e12:in:def", ipv4("8.8.8.8", "10.0.0.12", 6, tcpHeader(1, 80, 2))),
    ev("mbr:d:e44:in:def", syn),
    ev("mbr:d:g12:out:def", syn),
    ev("mbr:d:e12:in:inv", ipv4("10.0.0.13", "10.0.0.12", 1, icmpHeader(0, 0))),
    ev("mbr:d:e13:out:spoof", ipv4("10.200.0.99", "10.0.0.12", 17, udpHeader(5000, 53))),
    ev("mbr:u:e12:in:r7", syn),
    ev("mbr:d:e12:in:def", ipv6("fd00::13", "fd00::12", 58, icmpHeader(128, 0))),
    ev("mbr:a:e12:in:r7", ipv6("fd00::13", "fd00::12", 17, udpHeader(5353, 53))),
  ];
  const flows = events.map((x) => e.enrich(x)).filter((f): f is Flow => f !== undefined);
  assert.equal(flows.length, events.length);
  return flows;
}

const addrs = { src: { address: "10.0.0.13", port: 43210 }, dst: { address: "10.0.0.12", port: 80 } };
const base = {
  srcIdentity: 257,
  dstIdentity: 256,
  endpoint: "default/deathstar",
  direction: "ingress",
} as const;
const L7_EVENTS: L7Event[] = [
  {
    ...base,
    type: "http",
    verdict: "forwarded",
    method: "GET",
    url: "http://deathstar/v1",
    status: 200,
    latencyMs: 1.5,
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
  },
  {
    ...base,
    type: "http",
    verdict: "denied",
    method: "PUT",
    url: "http://deathstar/x",
    status: 403,
    reason: "no rule",
  },
  {
    ...base,
    type: "http",
    verdict: "error",
    method: "GET",
    url: "http://deathstar/y",
    status: 502,
    httpVersion: "HTTP/2",
  },
  { ...base, type: "http", verdict: "denied", reason: "malformed request" },
  { ...base, type: "dns", verdict: "forwarded", query: "example.com.", qtype: "A", transport: "UDP" },
  {
    ...base,
    type: "dns",
    verdict: "forwarded",
    query: "example.com.",
    qtype: "A",
    rcode: "NOERROR",
    answers: ["1.2.3.4"],
  },
  { ...base, type: "dns", verdict: "forwarded", query: "nope.", qtype: "AAAA", rcode: "NXDOMAIN" },
  { ...base, type: "dns", verdict: "denied", query: "evil.", qtype: "A", reason: "no DNS rule" },
  { ...base, type: "kafka", verdict: "forwarded", apiKey: 0, topics: ["empire"], correlationId: 7 },
  { ...base, type: "kafka", verdict: "denied", apiKey: 1, topics: ["deathstar-plans"], correlationId: 8 },
  { ...base, type: "tls", verdict: "forwarded", sni: "api.example.com" },
];

function records(): FlowRecord[] {
  const ring = new FlowRing({ capacity: 1000, nodeName: "node1" });
  for (const f of kernelFlows()) {
    ring.pushFlow(f);
    const d = dropEventOf(f);
    if (d !== undefined) ring.pushFlow(d);
  }
  for (const e of L7_EVENTS) ring.pushFlow(l7Flow(e, addrs, LOOKUP, "node1"));
  for (const f of Object.values(SAMPLES)) ring.pushFlow(f);
  ring.pushLost("PERF_EVENT_RING_BUFFER", 3);
  ring.pushLost("HUBBLE_RING_BUFFER", 2 ** 40);
  return ring.read();
}

describe("flows as Hubble's protojson", () => {
  test("every kind of flow, printed with -o json, parses strictly as a GetFlowsResponse", () => {
    const recs = records();
    assert.ok(assertHubbleStrict(recs, "observe fixtures") > 40);
  });

  test("the exporter's lines parse strictly too", () => {
    const dir = mkdtempSync(join(tmpdir(), "hb-export-"));
    try {
      const x = new FlowExporter({ path: join(dir, "flows.json") });
      x.start();
      for (const r of records()) x.write(r);
      x.close();
      const lines = readFileSync(join(dir, "flows.json"), "utf8").trim().split("\n");
      assert.equal(lines.length, records().length);
      for (const l of lines) parseHubbleStrict(l);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("our own fields stay out, the deciding policy stays in *_denied_by, uint64 are strings", () => {
    const deny = kernelFlows()[3];
    assert.ok(deny !== undefined && deny.rule !== undefined && deny.drop_reason_detail !== undefined);
    // What -o json printed before (our record as it is) is what Hubble refuses: the two extra fields.
    assert.throws(() => parseHubbleStrict(JSON.stringify({ flow: deny })), /drop_reason_detail|rule/);
    const line = formatJson({ flow: deny, node_name: "node1", time: deny.time });
    const raw = JSON.parse(line) as { flow: Record<string, unknown> };
    assert.equal(raw.flow["drop_reason_detail"], undefined);
    assert.equal(raw.flow["rule"], undefined);
    assert.deepEqual(
      (raw.flow["ingress_denied_by"] as { name: string; revision: unknown }[]).map((p) => [
        p.name,
        p.revision,
      ]),
      [["rule1", "4"]],
    );
    const lost = JSON.parse(
      formatJson({ lost_events: { source: "HUBBLE_RING_BUFFER", num_events_lost: 5 }, time: deny.time }),
    ) as {
      lost_events: { num_events_lost: unknown };
    };
    assert.equal(lost.lost_events.num_events_lost, "5");
  });

  test("cluster mode: the endpoints' node_name (the node a peer runs on) stays out; the flow parses strictly", () => {
    const deny = kernelFlows()[3];
    assert.ok(deny?.source !== undefined && deny.destination !== undefined);
    const flow: Flow = {
      ...deny,
      source: { ...deny.source, node_name: "n1" },
      destination: { ...deny.destination, node_name: "n2" },
    };
    const parsed = parseHubbleStrict(formatJson({ flow, node_name: "n2", time: flow.time }));
    const f = parsed["flow"] as { source: Record<string, unknown> };
    assert.equal(f.source["node_name"], undefined);
    assert.equal(f.source["identity"], deny.source.identity);
  });

  test("a policy denial is a policy verdict and a drop event with the reason's code and the policy", () => {
    const deny = kernelFlows()[3];
    assert.ok(deny !== undefined);
    const drop = dropEventOf(deny);
    assert.deepEqual(drop?.event_type, { type: 1, sub_type: 181 });
    assert.equal(drop?.ingress_denied_by?.[0]?.name, "rule1");
    assert.equal(drop?.policy_match_type, undefined);
    assert.notEqual(drop?.uuid, deny.uuid);
    assert.match(deny.uuid ?? "", /^[0-9a-f-]{36}$/);
    const allow = kernelFlows()[0];
    assert.ok(allow !== undefined);
    assert.equal(dropEventOf(allow), undefined);
  });

  test("L7: a forwarded HTTP response is a reply from the server; a denied request a REQUEST from the client", () => {
    const [ok, denied] = L7_EVENTS.map((e) => l7Flow(e, addrs, LOOKUP, "node1"));
    assert.equal(ok?.l7?.type, "RESPONSE");
    assert.equal(ok?.is_reply, true);
    assert.equal(ok?.IP?.source, "10.0.0.12");
    assert.equal(ok?.source?.identity, 256);
    assert.deepEqual(ok?.l4, { TCP: { source_port: 80, destination_port: 43210 } });
    assert.equal(denied?.l7?.type, "REQUEST");
    assert.equal(denied?.is_reply, false);
    assert.equal(denied?.IP?.source, "10.0.0.13");
    assert.equal(denied?.verdict, "DROPPED");
  });
});
