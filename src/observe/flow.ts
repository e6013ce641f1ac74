/**
 * The flow model: one observed packet or request, in the JSON shape of
 * `hubble observe -o json` (Cilium's api/v1/flow/flow.proto, protojson
 * spelling: `time`, `verdict`, `IP`, `l4`, `Type`, `Summary`, ...).
 *
 *   NFLOG event --enrich--> Flow --ring--> FlowRecord {flow} | {lost_events}
 *
 * Where Hubble has a field, we use its name, case and enum spelling. Membrane's
 * own additions use names Hubble does not: `drop_reason_detail` (the reason in
 * words) and `rule` (the policy rule element that decided); they stay out
 * of Hubble's JSON (hubble/json.ts). Numbers Hubble encodes as uint64 strings
 * (`num_events_lost`, `revision`, `latency_ns`) are plain numbers here and
 * strings in that JSON. Flows never carry HTTP header values (no secrets in flows).
 */

export type Verdict =
  "VERDICT_UNKNOWN" | "FORWARDED" | "DROPPED" | "ERROR" | "AUDIT" | "REDIRECTED" | "TRACED" | "TRANSLATED";

export const VERDICTS: readonly Verdict[] = [
  "VERDICT_UNKNOWN",
  "FORWARDED",
  "DROPPED",
  "ERROR",
  "AUDIT",
  "REDIRECTED",
  "TRACED",
  "TRANSLATED",
];

/**
 * The drop reasons Membrane produces, with Hubble's enum names and numbers
 * (flow.proto DropReason; the numbers are Cilium's DROP_* codes).
 */
export const DROP_REASONS = {
  /** A deny rule matched ("Policy denied by denylist"). */
  POLICY_DENY: { code: 181, text: "Policy denied by denylist" },
  /** Enforced and no allow rule matched ("Policy denied"). */
  POLICY_DENIED: { code: 133, text: "Policy denied" },
  /** Allowed only with mutual authentication, and none was there. */
  AUTH_REQUIRED: { code: 189, text: "Authentication required" },
  /** The source address is not the endpoint's own (anti-spoofing). */
  INVALID_SOURCE_IP: { code: 132, text: "Invalid source ip" },
  /** Conntrack state invalid (e.g. a reply with no request). */
  INVALID_PACKET_DROPPED: { code: 134, text: "Invalid packet" },
  /** Strict encryption: pod traffic to another node would have left unencrypted (encryption/strict.ts). */
  UNENCRYPTED_TRAFFIC: { code: 195, text: "Traffic is unencrypted" },
} as const;

export type DropReasonName = keyof typeof DROP_REASONS | "DROP_REASON_UNKNOWN";

export type TrafficDirection = "TRAFFIC_DIRECTION_UNKNOWN" | "INGRESS" | "EGRESS";
export type IPVersion = "IP_NOT_USED" | "IPv4" | "IPv6";
export type FlowType = "UNKNOWN_TYPE" | "L3_L4" | "L7";

/** Cilium monitor message types (event_type.type). */
export const EVENT_TYPE = { drop: 1, trace: 4, policyVerdict: 5, l7: 129 } as const;

/** Hubble's policy_match_type values (Cilium monitor PolicyMatch*). */
export const POLICY_MATCH = { none: 0, "L3-Only": 1, "L3-L4": 2, "L4-Only": 3, all: 4 } as const;
export type PolicyMatchName = keyof typeof POLICY_MATCH;

export interface TCPFlags {
  FIN?: boolean;
  SYN?: boolean;
  RST?: boolean;
  PSH?: boolean;
  ACK?: boolean;
  URG?: boolean;
  ECE?: boolean;
  CWR?: boolean;
  NS?: boolean;
}

export interface Ports {
  source_port: number;
  destination_port: number;
}

export type Layer4 =
  | { TCP: Ports & { flags?: TCPFlags } }
  | { UDP: Ports }
  | { SCTP: Ports }
  | { ICMPv4: { type: number; code: number } }
  | { ICMPv6: { type: number; code: number } };

export interface IP {
  source: string;
  destination: string;
  ipVersion: IPVersion;
  /** The packet went (or came) through the node's WireGuard tunnel (--encryption wireguard). */
  encrypted?: boolean;
}

export interface Endpoint {
  /** Endpoint id on its node (0 when the side is not a local endpoint). */
  ID?: number;
  identity: number;
  namespace?: string;
  /** `source:key=value`, sorted. */
  labels?: string[];
  pod_name?: string;
  /** Hubble's workloads (the pod's owning controller: name and kind); the metrics' *_workload labels read the first. */
  workloads?: { name: string; kind: string }[];
  /** Membrane, cluster mode: the node this side runs on (a peer's: the owner of its pod CIDR). */
  node_name?: string;
}

/** A policy named in *_allowed_by / *_denied_by (flow.proto Policy). */
export interface PolicyRefJSON {
  name: string;
  namespace?: string;
  kind: string;
  labels?: string[];
  revision?: number;
}

/** Hubble's Service: the Kubernetes Service a side's address and port belong to. */
export interface ServiceRefJSON {
  readonly name: string;
  readonly namespace: string;
}

/** L7 HTTP record; headers are deliberately absent (they may hold secrets). */
export interface HTTPRecord {
  code?: number;
  method?: string;
  url?: string;
  protocol?: string;
}

export interface DNSRecord {
  query: string;
  ips?: string[];
  /** Smallest TTL of the answer's address records (seconds). */
  ttl?: number;
  /** The CNAME targets the answer went through. */
  cnames?: string[];
  /** "proxy": the DNS proxy saw it (Hubble's observation_source). */
  observation_source?: string;
  rcode?: number;
  qtypes?: string[];
  /** Types of the answer section's records ("A", "AAAA", "CNAME", ...). */
  rrtypes?: string[];
}

/** L7 Kafka record (Hubble's Kafka message); payloads are never recorded. */
export interface KafkaRecord {
  error_code?: number;
  api_version?: number;
  api_key?: string;
  correlation_id?: number;
  topic?: string;
}

export interface Layer7 {
  type: "UNKNOWN_L7_TYPE" | "REQUEST" | "RESPONSE" | "SAMPLE";
  latency_ns?: number;
  http?: HTTPRecord;
  dns?: DNSRecord;
  kafka?: KafkaRecord;
}

export interface Flow {
  /** RFC 3339 with sub-second digits, UTC. */
  time: string;
  /** A random UUID per flow (Hubble's `uuid`). */
  uuid?: string;
  verdict: Verdict;
  /** Deprecated numeric form of drop_reason_desc (Hubble still emits it). */
  drop_reason?: number;
  drop_reason_desc?: DropReasonName;
  IP?: IP;
  l4?: Layer4;
  source?: Endpoint;
  destination?: Endpoint;
  Type: FlowType;
  node_name?: string;
  /** Names the DNS proxy learned for the source / destination address (Hubble: from the FQDN cache). */
  source_names?: string[];
  destination_names?: string[];
  l7?: Layer7;
  event_type: { type: number; sub_type?: number };
  /** The Service whose frontend the source address is (a reply from a ClusterIP). */
  source_service?: ServiceRefJSON;
  /** The Service the client dialled (its ClusterIP or NodePort, before the DNAT to a backend). */
  destination_service?: ServiceRefJSON;
  traffic_direction: TrafficDirection;
  /** Hubble's numeric policy_match_type (see POLICY_MATCH). */
  policy_match_type?: number;
  is_reply?: boolean;
  egress_allowed_by?: PolicyRefJSON[];
  ingress_allowed_by?: PolicyRefJSON[];
  egress_denied_by?: PolicyRefJSON[];
  ingress_denied_by?: PolicyRefJSON[];
  Summary?: string;
  /** OpenTelemetry: the trace id of an HTTP request's W3C `traceparent` (L7 flows). */
  trace_context?: { parent: { trace_id: string } };
  /** Hubble's AuthType: set when the deciding rule requires mutual authentication. */
  auth_type?: "DISABLED" | "SPIRE" | "TEST_ALWAYS_FAIL";
  /** The labels of the node that observed the flow (`key=value`, sorted; the agent's --node-labels). */
  node_labels?: string[];
  /** Membrane: why it was dropped, in words ("denied by rule spec.ingressDeny[0] of default/p1"). */
  drop_reason_detail?: string;
  /** Membrane: the rule element that decided. */
  rule?: { kind: string; name: string; namespace?: string; path: string };
}

/** Hubble's LostEventSource names. */
export type LostEventSource =
  "UNKNOWN_LOST_EVENT_SOURCE" | "PERF_EVENT_RING_BUFFER" | "OBSERVER_EVENTS_QUEUE" | "HUBBLE_RING_BUFFER";

export interface LostEvent {
  source: LostEventSource;
  num_events_lost: number;
}

/**
 * One item of the observe stream, as Hubble's GetFlowsResponse: a flow, or a
 * notice that events were lost. `time` and `node_name` sit beside either.
 */
export type FlowRecord =
  | { flow: Flow; node_name?: string; time: string }
  | { lost_events: LostEvent; node_name?: string; time: string };

export function isFlowRecord(r: FlowRecord): r is { flow: Flow; node_name?: string; time: string } {
  return "flow" in r;
}

/** The L4 protocol name of a flow ("TCP", "UDP", "SCTP", "ICMPv4", "ICMPv6") or undefined. */
export function l4Protocol(l4: Layer4 | undefined): "TCP" | "UDP" | "SCTP" | "ICMPv4" | "ICMPv6" | undefined {
  if (l4 === undefined) return undefined;
  if ("TCP" in l4) return "TCP";
  if ("UDP" in l4) return "UDP";
  if ("SCTP" in l4) return "SCTP";
  if ("ICMPv4" in l4) return "ICMPv4";
  return "ICMPv6";
}

/** Source and destination ports of TCP/UDP/SCTP, undefined otherwise. */
export function l4Ports(l4: Layer4 | undefined): Ports | undefined {
  if (l4 === undefined) return undefined;
  if ("TCP" in l4) return l4.TCP;
  if ("UDP" in l4) return l4.UDP;
  if ("SCTP" in l4) return l4.SCTP;
  return undefined;
}
