import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { FlowEnricher, isoTime, parseFlowPrefix } from "../../src/observe/enrich.js";
import type { Flow } from "../../src/observe/flow.js";
import type { NflogEvent } from "../../src/observe/nflog-msg.js";
import { icmpHeader, ipv4, LOOKUP, tcpHeader, udpHeader } from "./fixtures.js";

const T = Date.UTC(2024, 10, 23, 12, 0, 1, 123);
const syn = ipv4("10.0.0.13", "10.0.0.12", 6, tcpHeader(43210, 80, 0x02));
const ev = (prefix: string, packet: Buffer, mark?: number): NflogEvent => ({
  prefix,
  packet,
  timestampMs: T,
  ...(mark === undefined ? {} : { mark }),
});
const tiefighter = {
  ID: 13,
  identity: 257,
  namespace: "default",
  labels: ["k8s:app=tiefighter", "k8s:org=empire"],
  pod_name: "tiefighter",
};
const deathstar = {
  ID: 12,
  identity: 256,
  namespace: "default",
  labels: ["k8s:app=deathstar", "k8s:org=empire"],
  pod_name: "deathstar",
};

describe("FlowEnricher", () => {
  const enricher = new FlowEnricher({ lookup: LOOKUP, nodeName: "node1" });
  /** Every flow has a fresh uuid (checked here); the cases compare the rest. */
  const e = {
    stats: enricher.stats,
    enrich: (x: NflogEvent): Flow | undefined => {
      const f = enricher.enrich(x);
      if (f === undefined) return f;
      assert.match(f.uuid ?? "", /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const { uuid: _u, ...rest } = f;
      return rest;
    },
  };

  test("a deny rule gives POLICY_DENY with the policy in ingress_denied_by and the rule path", () => {
    assert.deepEqual(e.enrich(ev("mbr:d:e12:in:r7", syn)), {
      time: "2024-11-23T12:00:01.123Z",
      verdict: "DROPPED",
      drop_reason: 181,
      drop_reason_desc: "POLICY_DENY",
      IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
      l4: { TCP: { source_port: 43210, destination_port: 80, flags: { SYN: true } } },
      source: tiefighter,
      destination: deathstar,
      Type: "L3_L4",
      node_name: "node1",
      event_type: { type: 5 },
      traffic_direction: "INGRESS",
      policy_match_type: 2,
      is_reply: false,
      ingress_denied_by: [
        {
          name: "rule1",
          namespace: "default",
          kind: "CiliumNetworkPolicy",
          labels: [
            "k8s:io.cilium.k8s.policy.derived-from=CiliumNetworkPolicy",
            "k8s:io.cilium.k8s.policy.name=rule1",
            "k8s:io.cilium.k8s.policy.namespace=default",
          ],
          revision: 4,
        },
      ],
      Summary: "TCP Flags: SYN",
      drop_reason_detail: "denied by default/rule1 spec.ingressDeny[0]",
      rule: { kind: "CiliumNetworkPolicy", name: "rule1", namespace: "default", path: "spec.ingressDeny[0]" },
    });
  });

  const cases: { name: string; event: NflogEvent; want: Record<string, unknown> }[] = [
    {
      name: "default deny gives POLICY_DENIED, match type none and no policy",
      event: ev("mbr:d:e12:in:def", syn),
      want: {
        verdict: "DROPPED",
        drop_reason_desc: "POLICY_DENIED",
        drop_reason: 133,
        event_type: { type: 5 },
        policy_match_type: 0,
        ingress_denied_by: undefined,
        rule: undefined,
        drop_reason_detail: "default deny: no ingress policy allows it",
      },
    },
    {
      name: "a spoofed source gives INVALID_SOURCE_IP as a drop event, egress from the endpoint",
      event: ev("mbr:d:e13:out:spoof", ipv4("10.200.0.99", "10.0.0.12", 17, udpHeader(5000, 53)), 256),
      want: {
        drop_reason_desc: "INVALID_SOURCE_IP",
        event_type: { type: 1, sub_type: 132 },
        traffic_direction: "EGRESS",
        policy_match_type: undefined,
        source: tiefighter,
        destination: deathstar,
        drop_reason_detail: "spoofed source: the source address is not the endpoint's own",
      },
    },
    {
      name: "conntrack invalid gives INVALID_PACKET_DROPPED and leaves is_reply unknown",
      event: ev("mbr:d:e12:in:inv", ipv4("10.0.0.13", "10.0.0.12", 1, icmpHeader(0, 0))),
      want: {
        drop_reason_desc: "INVALID_PACKET_DROPPED",
        event_type: { type: 1, sub_type: 134 },
        is_reply: undefined,
        Summary: "ICMPv4 EchoReply",
      },
    },
    {
      name: "the packet mark names the peer identity even when the ipcache lookup would differ",
      event: ev("mbr:d:e12:in:def", ipv4("10.0.0.99", "10.0.0.12", 6, tcpHeader(1, 80, 2)), 258),
      want: { source: { identity: 258, labels: ["k8s:app=xwing", "k8s:org=alliance"] } },
    },
    {
      name: "without a mark the peer identity comes from the ipcache, and unknown addresses are world",
      event: ev("mbr:d:e12:in:def", ipv4("8.8.8.8", "10.0.0.12", 6, tcpHeader(1, 80, 2))),
      want: { source: { identity: 2, labels: ["reserved:world"] } },
    },
    {
      name: "a rule id the agent no longer knows still says it was a deny rule",
      event: ev("mbr:d:e12:in:r99", syn),
      want: {
        drop_reason_desc: "POLICY_DENY",
        ingress_denied_by: undefined,
        drop_reason_detail: "denied by deny rule #99 (no longer known to the agent)",
      },
    },
    {
      name: "an egress deny names the policy in egress_denied_by",
      event: ev("mbr:d:e13:out:r7", syn),
      want: {
        traffic_direction: "EGRESS",
        ingress_denied_by: undefined,
        egress_denied_by: [{ name: "rule1" }],
      },
    },
    {
      name: "the audit prefix gives verdict AUDIT with no drop reason but the would-be reason in words",
      event: ev("mbr:u:e12:in:r7", syn),
      want: {
        verdict: "AUDIT",
        drop_reason: undefined,
        drop_reason_desc: undefined,
        drop_reason_detail: "audit, would be dropped: denied by default/rule1 spec.ingressDeny[0]",
      },
    },
    {
      name: "an allowed new connection gives FORWARDED with the policy in ingress_allowed_by and no drop fields",
      event: ev("mbr:a:e12:in:r7", syn),
      want: {
        verdict: "FORWARDED",
        drop_reason: undefined,
        drop_reason_desc: undefined,
        drop_reason_detail: undefined,
        ingress_denied_by: undefined,
        ingress_allowed_by: [{ name: "rule1" }],
        event_type: { type: 5 },
        policy_match_type: 2,
        is_reply: false,
        rule: {
          kind: "CiliumNetworkPolicy",
          name: "rule1",
          namespace: "default",
          path: "spec.ingressDeny[0]",
        },
      },
    },
    {
      name: "an undecodable packet still gives the drop, without IP, saying why",
      event: ev("mbr:d:e12:in:def", Buffer.from([0x45, 0, 0])),
      want: {
        IP: undefined,
        l4: undefined,
        Summary: "invalid packet: IPv4 header needs 20 bytes, got 3",
        drop_reason_detail:
          "default deny: no ingress policy allows it (packet undecodable: IPv4 header needs 20 bytes, got 3)",
      },
    },
    {
      name: "an endpoint the agent does not know keeps its id",
      event: ev("mbr:d:e44:in:def", syn),
      want: { destination: { ID: 44, identity: 0 } },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const f = e.enrich(c.event) as unknown as Record<string, unknown>;
      assert.ok(f);
      for (const [k, v] of Object.entries(c.want)) {
        if (k === "egress_denied_by" || k === "ingress_allowed_by")
          assert.equal((f[k] as { name: string }[])[0]?.name, "rule1");
        else assert.deepEqual(f[k], v, k);
      }
    });
  }

  test("foreign prefixes are ignored and counted", () => {
    const x = new FlowEnricher({ lookup: LOOKUP });
    assert.equal(x.enrich(ev("some other log", syn)), undefined);
    assert.equal(x.enrich(ev("mbr:d:e1:sideways:def", syn)), undefined);
    assert.deepEqual(x.stats, { foreign: 2, undecodable: 0 });
  });

  test("parseFlowPrefix reads drop, allow and audit prefixes", () => {
    assert.deepEqual(parseFlowPrefix("mbr:u:e3:out:spoof"), {
      endpointId: 3,
      direction: "out",
      reason: { kind: "spoof" },
      allowed: false,
      audit: true,
    });
    assert.deepEqual(parseFlowPrefix("mbr:a:e3:out:r4"), {
      endpointId: 3,
      direction: "out",
      reason: { kind: "rule", ruleId: 4 },
      allowed: true,
      audit: false,
    });
    assert.deepEqual(parseFlowPrefix("mbr:d:e3:in:r0"), {
      endpointId: 3,
      direction: "in",
      reason: { kind: "rule", ruleId: 0 },
      allowed: false,
      audit: false,
    });
  });

  test("a policy group's log (shared chains: g<n>, no endpoint) names the endpoint by the packet: destination on ingress", () => {
    // Same flow as the endpoint-named prefix: deathstar (10.0.0.12, id 12) is the destination.
    assert.deepEqual(e.enrich(ev("mbr:d:g5:in:r7", syn)), e.enrich(ev("mbr:d:e12:in:r7", syn)));
    assert.deepEqual(e.enrich(ev("mbr:a:g5:in:r7", syn))?.destination, deathstar);
  });

  test("a policy group's log names the endpoint by the packet: source on egress", () => {
    const flow = e.enrich(ev("mbr:d:g12:out:def", syn));
    assert.deepEqual(flow?.source, tiefighter, "10.0.0.13 sent it: tiefighter, not endpoint 12");
    assert.deepEqual(flow, e.enrich(ev("mbr:d:e13:out:def", syn)));
  });

  test("a group's log whose packet names no local endpoint gives an unknown endpoint (ID 0), not another one", () => {
    const stray = ipv4("10.0.0.99", "10.0.0.98", 6, tcpHeader(1, 2, 0x02));
    assert.deepEqual(e.enrich(ev("mbr:d:g12:in:def", stray))?.destination, { ID: 0, identity: 0 });
  });

  test("spoofing and invalid conntrack state are an endpoint's own logs, never a group's", () => {
    assert.equal(parseFlowPrefix("mbr:d:g3:out:spoof"), undefined);
    assert.equal(parseFlowPrefix("mbr:d:g3:in:inv"), undefined);
    assert.deepEqual(parseFlowPrefix("mbr:u:g3:in:def"), {
      group: 3,
      direction: "in",
      reason: { kind: "default" },
      allowed: false,
      audit: true,
    });
  });

  test("the host firewall's log (h0) names the node itself (identity 1, reserved:host) and the rule that decided", () => {
    const flow = e.enrich(ev("mbr:d:h0:in:r7", syn));
    assert.deepEqual(flow?.destination, { ID: 0, identity: 1, labels: ["reserved:host"] });
    assert.deepEqual(flow?.source, tiefighter);
    assert.equal(flow?.drop_reason_desc, "POLICY_DENY");
    assert.equal(flow?.rule?.name, "rule1");
    assert.equal(e.enrich(ev("mbr:d:h0:out:def", syn))?.source?.identity, 1);
    assert.equal(e.enrich(ev("mbr:a:h0:in:r7", syn))?.verdict, "FORWARDED");
    assert.equal(e.enrich(ev("mbr:u:h0:in:def", syn))?.verdict, "AUDIT");
    for (const bad of ["mbr:d:h1:in:def", "mbr:d:h0:in:spoof", "mbr:a:h2:in:r1"])
      assert.equal(parseFlowPrefix(bad), undefined, bad);
  });

  test("times keep microseconds when the kernel gave them", () => {
    assert.equal(isoTime(T + 0.25), "2024-11-23T12:00:01.123250Z");
    assert.equal(isoTime(T), "2024-11-23T12:00:01.123Z");
  });
});
