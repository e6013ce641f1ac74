/**
 * Hubble's L3/L4 metric handlers, one per `--hubble-metrics` name, with
 * Hubble's metric names, label names and label values:
 *
 *   flow              hubble_flows_processed_total{protocol,type,subtype,verdict}
 *   drop              hubble_drop_total{reason,protocol}                   (DROPPED flows)
 *   policy            hubble_policy_verdicts_total{direction,match,action} (policy verdicts; L7 as match "l7/http")
 *   port-distribution hubble_port_distribution_total{protocol,port}        (forwarded requests only)
 *   tcp               hubble_tcp_flags_total{flag,family}                  (forwarded TCP: SYN, SYN-ACK, FIN, RST)
 *   icmp              hubble_icmp_total{family,type}
 *   flows-to-world    hubble_flows_to_world_total{protocol,verdict[,port]} (destination reserved:world)
 *
 * Context labels (metrics-context.ts) follow each handler's own labels (drop's
 * come first, as Hubble's drop handler puts them). The L7 handlers (dns, http, httpV2, kafka) are in metric-handlers-l7.ts.
 */
import type { Histogram } from "prom-client";
import { EVENT_TYPE, l4Ports, l4Protocol, POLICY_MATCH, type Flow } from "./flow.js";
import { icmpv4TypeName, icmpv6TypeName } from "./icmp-names.js";
import type { MetricHandlerSpec } from "./metrics-config.js";
import type { MetricContext } from "./metrics-context.js";
import type { Tally } from "./metrics-tally.js";

export interface MetricHandler {
  observe(f: Flow): void;
}

/** How a handler registers its metrics (on the FlowMetrics registry). */
export interface MetricFactory {
  tally(name: string, help: string, labelNames: readonly string[]): Tally;
  histogram(name: string, help: string, labelNames: readonly string[]): Histogram<string>;
}

/** Cilium's identity of the local host: its policy verdicts are not counted (it may reach every local endpoint). */
const HOST_IDENTITY = 1;
const CAPTURE = 3;

/** Hubble's FlowProtocol: the L7 protocol of an L7 record, else the L4 one. */
export function flowProtocol(f: Flow): string {
  const et = f.event_type.type;
  if (et === EVENT_TYPE.l7) return f.l7?.dns ? "DNS" : f.l7?.http ? "HTTP" : "Unknown L7";
  if (et === EVENT_TYPE.drop || et === EVENT_TYPE.trace || et === EVENT_TYPE.policyVerdict || et === CAPTURE)
    return l4Protocol(f.l4) ?? "Unknown L4";
  return "Unknown flow";
}

/** Cilium's trace observation points (event_type.sub_type of a trace event). */
const TRACE_POINTS = [
  "to-endpoint",
  "to-proxy",
  "to-host",
  "to-stack",
  "to-overlay",
  "from-endpoint",
  "from-proxy",
  "from-host",
  "from-stack",
  "from-overlay",
  "from-network",
  "to-network",
  "from-crypto",
  "to-crypto",
];

function typeAndSubtype(f: Flow): [string, string] {
  const et = f.event_type.type;
  switch (et) {
    case EVENT_TYPE.l7: {
      const l7 = f.l7;
      return ["L7", l7?.dns ? "DNS" : l7?.http ? "HTTP" : l7?.kafka ? "Kafka" : ""];
    }
    case EVENT_TYPE.drop:
      return ["Drop", ""];
    case CAPTURE:
      return ["Capture", ""];
    case EVENT_TYPE.trace:
      return ["Trace", TRACE_POINTS[f.event_type.sub_type ?? 0] ?? ""];
    case EVENT_TYPE.policyVerdict:
      return ["PolicyVerdict", ""];
    default:
      return ["Unknown", String(et)];
  }
}

const MATCH_NAMES = new Map<number, string>(
  Object.entries(POLICY_MATCH).map(([k, v]) => [v, k.toLowerCase()]),
);
const forwarded = (f: Flow): boolean => f.verdict === "FORWARDED" || f.verdict === "REDIRECTED";
const WORLD = new Set(["reserved:world", "reserved:world-ipv4", "reserved:world-ipv6"]);

function flowHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const t = m.tally("hubble_flows_processed_total", "Total number of flows processed", [
    "protocol",
    "type",
    "subtype",
    "verdict",
    ...ctx.names(),
  ]);
  return {
    observe(f) {
      const [type, subtype] = typeAndSubtype(f);
      t.inc([flowProtocol(f), type, subtype, f.verdict, ...ctx.values(f)]);
    },
  };
}

function dropHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  // As Hubble's drop handler: the context labels first.
  const t = m.tally("hubble_drop_total", "Number of drops", [...ctx.names(), "reason", "protocol"]);
  return {
    observe(f) {
      if (f.verdict !== "DROPPED") return;
      t.inc([...ctx.values(f), f.drop_reason_desc ?? "DROP_REASON_UNKNOWN", flowProtocol(f)]);
    },
  };
}

function policyHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const t = m.tally("hubble_policy_verdicts_total", "Total number of Cilium network policy verdicts", [
    "direction",
    "match",
    "action",
    ...ctx.names(),
  ]);
  return {
    observe(f) {
      const et = f.event_type.type;
      let match: string;
      if (et === EVENT_TYPE.policyVerdict) {
        if (f.source?.identity === HOST_IDENTITY) return;
        match = MATCH_NAMES.get(f.policy_match_type ?? 0) ?? "none";
      } else if (et === EVENT_TYPE.l7) {
        const l7 = f.l7;
        match = `l7/${l7?.dns ? "dns" : l7?.http ? "http" : l7?.kafka ? "kafka" : ""}`;
      } else return;
      t.inc([f.traffic_direction.toLowerCase(), match, f.verdict.toLowerCase(), ...ctx.values(f)]);
    },
  };
}

function portDistributionHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const t = m.tally("hubble_port_distribution_total", "Numbers of packets distributed by destination port", [
    "protocol",
    "port",
    ...ctx.names(),
  ]);
  return {
    observe(f) {
      // A reply, or a flow not known to be a request, would count an ephemeral port.
      if (!forwarded(f) || f.l4 === undefined || f.is_reply !== false) return;
      const protocol = l4Protocol(f.l4) as string;
      t.inc([protocol, String(l4Ports(f.l4)?.destination_port ?? 0), ...ctx.values(f)]);
    },
  };
}

function tcpHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const t = m.tally("hubble_tcp_flags_total", "TCP flag occurrences", ["flag", "family", ...ctx.names()]);
  return {
    observe(f) {
      if (!forwarded(f) || f.IP === undefined || f.l4 === undefined || !("TCP" in f.l4)) return;
      const flags = f.l4.TCP.flags;
      if (flags === undefined) return;
      const rest = [f.IP.ipVersion, ...ctx.values(f)];
      if (flags.FIN) t.inc(["FIN", ...rest]);
      if (flags.SYN) t.inc([flags.ACK ? "SYN-ACK" : "SYN", ...rest]);
      if (flags.RST) t.inc(["RST", ...rest]);
    },
  };
}

function icmpHandler(m: MetricFactory, ctx: MetricContext): MetricHandler {
  const t = m.tally("hubble_icmp_total", "Number of ICMP messages", ["family", "type", ...ctx.names()]);
  return {
    observe(f) {
      const l4 = f.l4;
      if (l4 === undefined) return;
      if ("ICMPv4" in l4) t.inc(["IPv4", icmpv4TypeName(l4.ICMPv4.type, l4.ICMPv4.code), ...ctx.values(f)]);
      else if ("ICMPv6" in l4)
        t.inc(["IPv6", icmpv6TypeName(l4.ICMPv6.type, l4.ICMPv6.code), ...ctx.values(f)]);
    },
  };
}

function flowsToWorldHandler(m: MetricFactory, ctx: MetricContext, spec: MetricHandlerSpec): MetricHandler {
  const anyDrop = spec.options.has("any-drop");
  const withPort = spec.options.has("port");
  const synOnly = spec.options.has("syn-only");
  const t = m.tally("hubble_flows_to_world_total", "Total number of flows to reserved:world", [
    "protocol",
    "verdict",
    ...(withPort ? ["port"] : []),
    ...ctx.names(),
  ]);
  return {
    observe(f) {
      const l4 = f.l4;
      if (l4 === undefined || !(f.destination?.labels ?? []).some((l) => WORLD.has(l))) return;
      const dropped = f.verdict === "DROPPED";
      // Without any-drop only policy drops count (Hubble: POLICY_DENIED; ours also a deny rule's POLICY_DENY).
      const policyDrop = f.drop_reason_desc === "POLICY_DENIED" || f.drop_reason_desc === "POLICY_DENY";
      if (dropped && !anyDrop && !policyDrop) return;
      const reply = f.is_reply === true;
      if (!dropped && reply) return; // a forwarded reply's port is ephemeral
      if (synOnly && (!("TCP" in l4) || l4.TCP.flags?.SYN !== true || reply)) return;
      const port = withPort ? [String(l4Ports(l4)?.destination_port ?? "")] : [];
      t.inc([flowProtocol(f), f.verdict, ...port, ...ctx.values(f)]);
    },
  };
}

type Build = (m: MetricFactory, ctx: MetricContext, spec: MetricHandlerSpec) => MetricHandler;

/** The L3/L4 handlers by name. */
export const L4_HANDLERS: Readonly<Record<string, Build>> = {
  flow: flowHandler,
  drop: dropHandler,
  policy: policyHandler,
  "port-distribution": portDistributionHandler,
  tcp: tcpHandler,
  icmp: icmpHandler,
  "flows-to-world": flowsToWorldHandler,
};
