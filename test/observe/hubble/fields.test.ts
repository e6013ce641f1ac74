/**
 * The last of Hubble's flow fields (issue 14 item 1), each read back strictly with Hubble's schema
 * and through the direct binary encoder:
 *   policy_match_type  from the endpoint's MapState in a real PolicyEngine (L3-Only, L3-L4, L4-Only, all)
 *   node_labels        the node's labels (`key=value`, sorted) on kernel and L7 flows
 *   source_names / destination_names   the names the DNS proxy learned for an address
 *   DNS ttl, cnames, rrtypes, observation_source   from a real DNS answer (readAnswer) through l7Flow
 *   Kafka api_version
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fromBinary, fromJson, toBinary } from "@bufbuild/protobuf";
import dnsPacket from "dns-packet";
import { FlowEnricher, type FlowLookup } from "../../../src/observe/enrich.js";
import type { Flow, FlowRecord } from "../../../src/observe/flow.js";
import { encodeRecord } from "../../../src/observe/hubble/encode.js";
import { hubbleRecord } from "../../../src/observe/hubble/json.js";
import { hubbleSchema } from "../../../src/observe/hubble/schema.js";
import { l7Flow } from "../../../src/observe/l7flow.js";
import { parsePolicies } from "../../../src/policy/api/index.js";
import { matchTypeAt } from "../../../src/policy/match-type.js";
import { PolicyEngine } from "../../../src/policy/engine.js";
import { parseQuery, readAnswer } from "../../../src/proxy/dns/message.js";
import type { L7Event } from "../../../src/proxy/types.js";
import { ipv4, LOOKUP, tcpHeader, udpHeader } from "../fixtures.js";
import { parseHubbleStrict } from "./strict.js";
import { formatJson } from "../../../src/observe/printer.js";

/** A server with four ingress rules, one per kind of policy map entry. */
function engine(): PolicyEngine {
  const e = new PolicyEngine();
  e.setNamespace("default", {});
  e.upsertEndpoint({ name: "server", namespace: "default", labels: { app: "server" }, ips: ["10.0.0.12"] });
  e.upsertEndpoint({ name: "client", namespace: "default", labels: { app: "client" }, ips: ["10.0.0.13"] });
  e.upsertEndpoint({ name: "admin", namespace: "default", labels: { app: "admin" }, ips: ["10.0.0.14"] });
  const text = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
    - fromEndpoints: [{matchLabels: {app: client}}]
      toPorts: [{ports: [{port: "80", protocol: TCP}]}]
    - fromEndpoints: [{matchLabels: {app: admin}}]
    - toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
    - fromEntities: [all]
      toPorts: [{ports: [{port: "53", protocol: UDP}]}]
`;
  for (const p of parsePolicies(text, "p.yaml")) e.upsertPolicy(p);
  return e;
}

/** The fixtures' lookup, with the engine's match types and DNS-learned names. */
function lookup(e: PolicyEngine): FlowLookup {
  const server = { namespace: "default", name: "server" };
  return {
    ...LOOKUP,
    matchTypeOf: (q) =>
      q.endpointId === 12
        ? matchTypeAt(e, server, q.ingress ? "ingress" : "egress", q.remoteIdentity, q.proto, q.port)
        : undefined,
    namesOfIp: (ip) => (ip === "10.0.0.13" ? ["client.example.com"] : undefined),
  };
}

const identityOf = (e: PolicyEngine, name: string): number =>
  e.getEndpoint("default", name)?.identity.id ?? assert.fail(`no endpoint ${name}`);

/** Our JSON parses strictly, and the direct encoder writes what the reflective path writes. */
function checkBoth(r: FlowRecord): Record<string, unknown> {
  const s = hubbleSchema();
  const parsed = parseHubbleStrict(formatJson(r));
  const fast = encodeRecord(r);
  assert.ok(fast !== undefined, "written by the direct encoder");
  const slow = toBinary(s.GetFlowsResponse, fromJson(s.GetFlowsResponse, hubbleRecord(r) as never, { registry: s.registry })); // prettier-ignore
  assert.deepEqual(fromBinary(s.GetFlowsResponse, fast), fromBinary(s.GetFlowsResponse, slow));
  return parsed["flow"] as Record<string, unknown>;
}

describe("Hubble's last flow fields", () => {
  const e = engine();
  const enricher = new FlowEnricher({
    lookup: lookup(e),
    nodeName: "node1",
    nodeLabels: ["kubernetes.io/hostname=node1", "zone=a"],
  });
  const verdict = (src: string, proto: "tcp" | "udp", port: number, prefix = "mbr:a:e12:in:r7"): Flow => {
    const l4 = proto === "tcp" ? tcpHeader(40000, port, 0x02) : udpHeader(40000, port);
    const mark = identityOf(e, src === "10.0.0.13" ? "client" : "admin");
    const f = enricher.enrich({ prefix, packet: ipv4(src, "10.0.0.12", proto === "tcp" ? 6 : 17, l4), timestampMs: Date.now(), mark }); // prettier-ignore
    assert.ok(f !== undefined);
    return f;
  };

  test("policy_match_type: the kind of the MapState entry that matched, as Cilium numbers it", () => {
    const cases = [
      { name: "peer and port: L3-L4", src: "10.0.0.13", proto: "tcp", port: 80, want: 2 },
      { name: "peer, any port: L3-Only", src: "10.0.0.14", proto: "tcp", port: 9999, want: 1 },
      { name: "port from anyone: L4-Only", src: "10.0.0.13", proto: "tcp", port: 8080, want: 3 },
      { name: "entity all on a port: L4-Only (wildcard identity)", src: "10.0.0.13", proto: "udp", port: 53, want: 3 }, // prettier-ignore
    ] as const;
    for (const c of cases) {
      const f = verdict(c.src, c.proto, c.port);
      assert.equal(f.policy_match_type, c.want, c.name);
      assert.equal(
        checkBoth({ flow: f, node_name: "node1", time: f.time })["policy_match_type"],
        c.want,
        c.name,
      );
    }
    // Default deny matched no entry.
    assert.equal(verdict("10.0.0.13", "tcp", 22, "mbr:d:e12:in:def").policy_match_type, 0);
    // Without the engine's answer: the rule's own kind (fixtures: L3-L4), as before.
    const bare = new FlowEnricher({ lookup: LOOKUP }).enrich({ prefix: "mbr:a:e12:in:r7", packet: ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(1, 80, 2)), timestampMs: Date.now() }); // prettier-ignore
    assert.equal(bare?.policy_match_type, 2);
  });

  test("node_labels and the names DNS taught on kernel flows", () => {
    const f = verdict("10.0.0.13", "tcp", 80);
    const j = checkBoth({ flow: f, node_name: "node1", time: f.time });
    assert.deepEqual(j["node_labels"], ["kubernetes.io/hostname=node1", "zone=a"]);
    assert.deepEqual(j["source_names"], ["client.example.com"]);
    assert.equal(j["destination_names"], undefined);
  });

  test("DNS: ttl, cnames and rrtypes from a real answer; observation_source proxy; Kafka api_version", () => {
    const q = dnsPacket.encode({ type: "query", id: 7, flags: dnsPacket.RECURSION_DESIRED, questions: [{ type: "A", name: "www.example.com" }] }); // prettier-ignore
    const query = parseQuery(q);
    assert.ok(query.kind === "ok");
    const answer = dnsPacket.encode({
      type: "response",
      id: 7,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
      questions: [{ type: "A", name: "www.example.com" }],
      answers: [
        { type: "CNAME", name: "www.example.com", ttl: 300, data: "edge.example.net" },
        { type: "A", name: "edge.example.net", ttl: 60, data: "192.0.2.7" },
        { type: "A", name: "edge.example.net", ttl: 90, data: "192.0.2.8" },
      ],
    });
    const a = readAnswer(answer, query.query);
    assert.ok(a.ok);
    assert.deepEqual([a.ttl, a.cnames, a.rrtypes], [60, ["edge.example.net."], ["CNAME", "A"]]);
    const base = {
      srcIdentity: 257,
      dstIdentity: 2,
      endpoint: "default/client",
      direction: "egress",
    } as const;
    const dns: L7Event = {
      ...base,
      type: "dns",
      verdict: "forwarded",
      query: "www.example.com.",
      qtype: "A",
      rcode: "NOERROR",
      answers: a.ips,
      ttl: a.ttl,
      cnames: a.cnames,
      rrtypes: a.rrtypes,
    };
    const addrs = { src: { address: "10.0.0.13", port: 40000 }, dst: { address: "10.0.0.53", port: 53 } };
    const f = l7Flow(dns, addrs, lookup(e), "node1", ["zone=a"]);
    const j = checkBoth({ flow: f, node_name: "node1", time: f.time });
    const d = (j["l7"] as { dns: Record<string, unknown> }).dns;
    assert.deepEqual(d, {
      query: "www.example.com.",
      ips: ["192.0.2.7", "192.0.2.8"],
      ttl: 60,
      cnames: ["edge.example.net."],
      observation_source: "proxy", // rcode 0 (NOERROR) is proto3's default: not written
      qtypes: ["A"],
      rrtypes: ["CNAME", "A"],
    });
    assert.deepEqual(j["node_labels"], ["zone=a"]);
    // The reply goes from the server to the client: the client's names are the destination's.
    assert.deepEqual(j["destination_names"], ["client.example.com"]);
    const kafka: L7Event = { ...base, type: "kafka", verdict: "forwarded", apiKey: 0, apiVersion: 7, correlationId: 3, topics: ["t"] }; // prettier-ignore
    const k = l7Flow(kafka, addrs, LOOKUP, "node1");
    const kj = checkBoth({ flow: k, node_name: "node1", time: k.time });
    assert.equal((kj["l7"] as { kafka: Record<string, unknown> }).kafka["api_version"], 7);
  });
});
