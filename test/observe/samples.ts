/** A small set of named flows the filter, ring, printer and export tests share. */
import type { Flow } from "../../src/observe/flow.js";

const ep = (pod: string, ns: string, identity: number, labels: string[]) => ({
  ID: identity - 200,
  identity,
  namespace: ns,
  pod_name: pod,
  labels,
});
const tie = ep("tiefighter-7d9", "default", 257, ["k8s:app=tiefighter", "k8s:org=empire"]);
const death = ep("deathstar-6f8", "default", 256, ["k8s:app=deathstar", "k8s:org=empire", "k8s:tier=api"]);
const dns = ep("coredns-abc", "kube-system", 300, ["k8s:k8s-app=kube-dns"]);

export const SAMPLES: Record<string, Flow> = {
  /** tiefighter -> deathstar:80 TCP SYN, denied by default/rule1 at ingress. */
  deny: {
    time: "2024-11-23T12:00:01.123Z",
    verdict: "DROPPED",
    drop_reason: 181,
    drop_reason_desc: "POLICY_DENY",
    IP: { source: "10.0.0.13", destination: "10.0.0.12", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 43210, destination_port: 80, flags: { SYN: true } } },
    source: tie,
    destination: death,
    Type: "L3_L4",
    node_name: "kind/node1",
    event_type: { type: 5 },
    traffic_direction: "INGRESS",
    policy_match_type: 2,
    is_reply: false,
    ingress_denied_by: [{ name: "rule1", namespace: "default", kind: "CiliumNetworkPolicy" }],
    Summary: "TCP Flags: SYN",
    drop_reason_detail: "denied by default/rule1 spec.ingress[0]",
    rule: { kind: "CiliumNetworkPolicy", name: "rule1", namespace: "default", path: "spec.ingress[0]" },
  },
  /** tiefighter -> coredns:53 UDP, allowed at egress. */
  dns: {
    time: "2024-11-23T12:00:02.000Z",
    verdict: "FORWARDED",
    IP: { source: "10.0.0.13", destination: "10.0.1.5", ipVersion: "IPv4" },
    l4: { UDP: { source_port: 5353, destination_port: 53 } },
    source: tie,
    destination: dns,
    Type: "L3_L4",
    node_name: "kind/node1",
    event_type: { type: 5 },
    traffic_direction: "EGRESS",
    policy_match_type: 2,
    is_reply: false,
    Summary: "UDP",
  },
  /** A spoofed IPv6 ICMP from deathstar to the world, dropped. */
  spoof: {
    time: "2024-11-23T12:00:03.000Z",
    verdict: "DROPPED",
    drop_reason: 132,
    drop_reason_desc: "INVALID_SOURCE_IP",
    IP: { source: "fd00::99", destination: "2001:db8::1", ipVersion: "IPv6" },
    l4: { ICMPv6: { type: 128, code: 0 } },
    source: death,
    destination: { identity: 2, labels: ["reserved:world"] },
    Type: "L3_L4",
    node_name: "kind/node2",
    event_type: { type: 1, sub_type: 132 },
    traffic_direction: "EGRESS",
    is_reply: false,
    Summary: "ICMPv6 EchoRequest",
    drop_reason_detail: "spoofed source: the source address is not the endpoint's own",
  },
  /** An HTTP response 404 from deathstar to tiefighter (a reply). */
  http: {
    time: "2024-11-23T12:00:04.000Z",
    verdict: "FORWARDED",
    IP: { source: "10.0.0.12", destination: "10.0.0.13", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 80, destination_port: 43210 } },
    source: death,
    destination: tie,
    Type: "L7",
    node_name: "kind/node1",
    l7: {
      type: "RESPONSE",
      http: { code: 404, method: "GET", url: "http://deathstar/v1/exhaust-port?x=1", protocol: "HTTP/1.1" },
    },
    event_type: { type: 129 },
    traffic_direction: "INGRESS",
    is_reply: true,
    Summary: "HTTP/1.1 404 GET http://deathstar/v1/exhaust-port?x=1",
  },
  /** An audited default deny, xwing (world-ish identity 258, no pod) -> deathstar:443. */
  audit: {
    time: "2024-11-23T12:00:05.000Z",
    verdict: "AUDIT",
    IP: { source: "192.168.7.7", destination: "10.0.0.12", ipVersion: "IPv4" },
    l4: { TCP: { source_port: 50000, destination_port: 443, flags: { SYN: true } } },
    source: { identity: 258, labels: ["k8s:app=xwing", "k8s:org=alliance"] },
    destination: death,
    Type: "L3_L4",
    event_type: { type: 5 },
    traffic_direction: "INGRESS",
    policy_match_type: 0,
    is_reply: false,
    Summary: "TCP Flags: SYN",
    drop_reason_detail: "audit, would be dropped: default deny: no ingress policy allows it",
  },
};

export const NAMES = Object.keys(SAMPLES);
