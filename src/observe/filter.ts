/**
 * The one flow filter language (STYLE.md §11): what the agent evaluates,
 * what `membrane observe` flags compile into (flags.ts), what the exporter
 * and `--input FILE` use.
 *
 *   FlowFilterSet {allowlist: [FlowFilter...], denylist: [...]} --compileFilter--> (flow) => boolean
 *
 * As Hubble's FlowFilter: inside one filter every field that is set must
 * match (AND), and a field matches when any of its values does (OR). A flow
 * passes when it matches some allowlist filter (or the allowlist is empty)
 * and no denylist filter. Field names are Hubble's.
 *
 * As Cilium, a policy denial is two records: the policy verdict (type 5) and
 * a drop event (type 1) beside it (drop-event.ts); `{type: 1}` matches the latter.
 */
import { RE2JS } from "re2js";
import { MembraneError } from "../errors.js";
import { containsAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { LabelSet } from "../labels/label.js";
import type { Selector } from "../labels/selector.js";
import {
  l4Ports,
  l4Protocol,
  VERDICTS,
  type DropReasonName,
  type Endpoint,
  type Flow,
  type IPVersion,
  type TrafficDirection,
  type Verdict,
} from "./flow.js";
import { parseLabelSelector } from "./labelexpr.js";

export interface EventTypeFilter {
  type: number;
  match_sub_type?: boolean;
  sub_type?: number;
}

export interface FlowFilter {
  /** Flow uuids. */
  uuid?: string[];
  /** Exact addresses or CIDRs. */
  source_ip?: string[];
  destination_ip?: string[];
  /** `namespace/pod-name-prefix`, `namespace/` (whole namespace) or `pod-name-prefix` (any namespace). */
  source_pod?: string[];
  destination_pod?: string[];
  /** The Service a side belongs to: `namespace/name-prefix`, `namespace/` or `name-prefix`, as pods. */
  source_service?: string[];
  destination_service?: string[];
  /** Label selector text (labelexpr.ts). */
  source_label?: string[];
  destination_label?: string[];
  source_identity?: number[];
  destination_identity?: number[];
  traffic_direction?: TrafficDirection[];
  verdict?: Verdict[];
  drop_reason_desc?: DropReasonName[];
  event_type?: EventTypeFilter[];
  /** "404" exact, "4+" any 4xx. */
  http_status_code?: string[];
  http_method?: string[];
  /** RE2 regular expressions, unanchored, on the request path. */
  http_path?: string[];
  /** tcp, udp, sctp, icmp (v4 or v6), icmpv4, icmpv6, http, dns. */
  protocol?: string[];
  source_port?: string[];
  destination_port?: string[];
  reply?: boolean[];
  /** Glob patterns (`*`) on the node name. */
  node_name?: string[];
  ip_version?: IPVersion[];
}

/** Every field a FlowFilter may have (what the API accepts). */
export const FLOW_FILTER_FIELDS: readonly (keyof FlowFilter)[] = [
  "uuid",
  "source_ip",
  "destination_ip",
  "source_pod",
  "destination_pod",
  "source_service",
  "destination_service",
  "source_label",
  "destination_label",
  "source_identity",
  "destination_identity",
  "traffic_direction",
  "verdict",
  "drop_reason_desc",
  "event_type",
  "http_status_code",
  "http_method",
  "http_path",
  "protocol",
  "source_port",
  "destination_port",
  "reply",
  "node_name",
  "ip_version",
];

export interface FlowFilterSet {
  allowlist?: FlowFilter[];
  denylist?: FlowFilter[];
}

type Pred = (f: Flow) => boolean;

function invalid(path: string, why: string, hint: string): MembraneError {
  return new MembraneError("FLOW_FILTER_INVALID", `Cannot use flow filter ${path}: ${why}`, {
    location: { path },
    hint,
  });
}

const labelSets = new WeakMap<readonly string[], LabelSet>();
function labelsOf(ep: Endpoint | undefined): LabelSet {
  const l = ep?.labels;
  if (l === undefined) return LabelSet.EMPTY;
  let s = labelSets.get(l);
  if (s === undefined) {
    try {
      s = LabelSet.parse(l);
    } catch {
      s = LabelSet.EMPTY;
    }
    labelSets.set(l, s);
  }
  return s;
}

function ipPred(values: string[], path: string, side: "source" | "destination"): Pred {
  const prefixes: Prefix[] = values.map((v, i) => {
    const p = parsePrefix(v, true);
    if (p === undefined)
      throw invalid(
        `${path}[${i}]`,
        `"${v}" is not an IP address or CIDR`,
        'Write "10.0.0.1" or "10.0.0.0/8".',
      );
    return p;
  });
  return (f) => {
    const ip = f.IP?.[side];
    return ip !== undefined && prefixes.some((p) => containsAddr(p, ip));
  };
}

/** `namespace/name-prefix` patterns on a side's pod or (Hubble's --to-service) its Service. */
function podPred(values: string[], side: "source" | "destination", service = false): Pred {
  const pats = values.map((v) => {
    const i = v.indexOf("/");
    return i < 0 ? { ns: undefined, pod: v } : { ns: v.slice(0, i), pod: v.slice(i + 1) };
  });
  return (f) => {
    const s = service ? f[`${side}_service`] : undefined;
    const ep = service ? s && { namespace: s.namespace, pod_name: s.name } : f[side];
    if (ep === undefined) return false;
    return pats.some(
      (p) =>
        (p.ns === undefined || ep.namespace === p.ns) &&
        (p.pod === "" ? p.ns !== undefined : (ep.pod_name ?? "").startsWith(p.pod)),
    );
  };
}

function portPred(values: string[], path: string, side: "source_port" | "destination_port"): Pred {
  const ports = values.map((v, i) => {
    if (!/^\d{1,5}$/.test(v) || Number(v) > 65535)
      throw invalid(`${path}[${i}]`, `"${v}" is not a port number (0-65535)`, "Give a port such as 80.");
    return Number(v);
  });
  return (f) => {
    const p = l4Ports(f.l4);
    return p !== undefined && ports.includes(p[side]);
  };
}

/** What `--protocol` accepts: L4 protocols, then the L7 protocols of the proxy's flows. */
export const FLOW_PROTOCOLS: readonly string[] = [
  "tcp",
  "udp",
  "sctp",
  "icmp",
  "icmpv4",
  "icmpv6",
  "http",
  "dns",
  "kafka",
];
const PROTOCOLS = FLOW_PROTOCOLS;

function protocolPred(values: string[], path: string): Pred {
  const want = values.map((v, i) => {
    const p = v.toLowerCase();
    if (!PROTOCOLS.includes(p))
      throw invalid(`${path}[${i}]`, `unknown protocol "${v}"`, `Use one of ${PROTOCOLS.join(", ")}.`);
    return p;
  });
  return (f) => {
    const l4 = l4Protocol(f.l4)?.toLowerCase();
    return want.some((p) => {
      if (p === "http") return f.l7?.http !== undefined;
      if (p === "dns") return f.l7?.dns !== undefined;
      if (p === "kafka") return f.l7?.kafka !== undefined;
      if (p === "icmp") return l4 === "icmpv4" || l4 === "icmpv6";
      return l4 === p;
    });
  };
}

function statusPred(values: string[], path: string): Pred {
  const pats = values.map((v, i) => {
    if (!/^(\d{3}|\d{1,2}\+)$/.test(v))
      throw invalid(`${path}[${i}]`, `"${v}" is not a status code or class`, 'Write "404", "4+" or "50+".');
    return v;
  });
  return (f) => {
    const code = f.l7?.http?.code;
    if (code === undefined) return false;
    const s = String(code);
    return pats.some((p) => (p.endsWith("+") ? s.startsWith(p.slice(0, -1)) : s === p));
  };
}

function globPred(values: string[]): (s: string) => boolean {
  return (s) => values.some((g) => globMatch(g, s));
}

/**
 * Whole-string match of a pattern where `*` stands for any run of characters.
 * Linear two-pointer walk with one backtrack point: the patterns come from API
 * requests and run per flow, so no regular expression (`a*a*a*...b` would
 * backtrack a JS RegExp polynomially).
 */
export function globMatch(pattern: string, s: string): boolean {
  let p = 0;
  let i = 0;
  let star = -1;
  let mark = 0;
  while (i < s.length) {
    if (p < pattern.length && pattern[p] !== "*" && pattern[p] === s[i]) {
      p++;
      i++;
    } else if (p < pattern.length && pattern[p] === "*") {
      star = p++;
      mark = i;
    } else if (star >= 0) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === "*") p++;
  return p === pattern.length;
}

function eventTypePred(values: EventTypeFilter[]): Pred {
  return (f) =>
    values.some((t) => {
      const sameType = f.event_type.type === t.type;
      return sameType && (!t.match_sub_type || (f.event_type.sub_type ?? 0) === (t.sub_type ?? 0));
    });
}

function oneOf<T extends string>(values: T[], allowed: readonly string[], path: string): void {
  values.forEach((v, i) => {
    if (!allowed.includes(v))
      throw invalid(`${path}[${i}]`, `"${v}" is not one of ${allowed.join(", ")}`, "Fix the value.");
  });
}

/** Compiles one filter (all set fields ANDed). */
export function compileOne(ff: FlowFilter, path: string): Pred {
  const preds: Pred[] = [];
  const has = <T>(v: T[] | undefined): v is T[] => v !== undefined && v.length > 0;
  if (has(ff.uuid)) {
    const v = ff.uuid;
    preds.push((f) => f.uuid !== undefined && v.includes(f.uuid));
  }
  if (has(ff.source_ip)) preds.push(ipPred(ff.source_ip, `${path}.source_ip`, "source"));
  if (has(ff.destination_ip)) preds.push(ipPred(ff.destination_ip, `${path}.destination_ip`, "destination"));
  if (has(ff.source_pod)) preds.push(podPred(ff.source_pod, "source"));
  if (has(ff.destination_pod)) preds.push(podPred(ff.destination_pod, "destination"));
  if (has(ff.source_service)) preds.push(podPred(ff.source_service, "source", true));
  if (has(ff.destination_service)) preds.push(podPred(ff.destination_service, "destination", true));
  for (const side of ["source", "destination"] as const) {
    const vals = ff[`${side}_label`];
    if (has(vals)) {
      const sels: Selector[] = vals.map((v, i) => parseLabelSelector(v, `${path}.${side}_label[${i}]`));
      preds.push((f) => {
        const ls = labelsOf(f[side]);
        return sels.some((s) => s.matches(ls));
      });
    }
    const ids = ff[`${side}_identity`];
    if (has(ids)) preds.push((f) => ids.includes(f[side]?.identity ?? -1));
  }
  if (has(ff.traffic_direction)) {
    const v = ff.traffic_direction;
    oneOf(v, ["INGRESS", "EGRESS", "TRAFFIC_DIRECTION_UNKNOWN"], `${path}.traffic_direction`);
    preds.push((f) => v.includes(f.traffic_direction));
  }
  if (has(ff.verdict)) {
    const v = ff.verdict;
    oneOf(v, VERDICTS, `${path}.verdict`);
    preds.push((f) => v.includes(f.verdict));
  }
  if (has(ff.drop_reason_desc)) {
    const v = ff.drop_reason_desc;
    preds.push((f) => f.drop_reason_desc !== undefined && v.includes(f.drop_reason_desc));
  }
  if (has(ff.event_type)) preds.push(eventTypePred(ff.event_type));
  if (has(ff.http_status_code)) preds.push(statusPred(ff.http_status_code, `${path}.http_status_code`));
  if (has(ff.http_method)) {
    const v = ff.http_method.map((m) => m.toUpperCase());
    preds.push((f) => v.includes((f.l7?.http?.method ?? "").toUpperCase()));
  }
  if (has(ff.http_path)) {
    const res = ff.http_path.map((p, i) => {
      try {
        return RE2JS.compile(p);
      } catch (e) {
        throw invalid(
          `${path}.http_path[${i}]`,
          `"${p}" is not an RE2 regular expression (${String(e)})`,
          "Fix the pattern.",
        );
      }
    });
    preds.push((f) => {
      const url = f.l7?.http?.url;
      if (url === undefined) return false;
      const p = url.replace(/^[a-z]+:\/\/[^/]*/i, "").replace(/\?.*$/, "") || "/";
      return res.some((r) => r.matcher(p).find());
    });
  }
  if (has(ff.protocol)) preds.push(protocolPred(ff.protocol, `${path}.protocol`));
  if (has(ff.source_port)) preds.push(portPred(ff.source_port, `${path}.source_port`, "source_port"));
  if (has(ff.destination_port))
    preds.push(portPred(ff.destination_port, `${path}.destination_port`, "destination_port"));
  if (has(ff.reply)) {
    const v = ff.reply;
    preds.push((f) => f.is_reply !== undefined && v.includes(f.is_reply));
  }
  if (has(ff.node_name)) {
    const g = globPred(ff.node_name);
    preds.push((f) => g(f.node_name ?? ""));
  }
  if (has(ff.ip_version)) {
    const v = ff.ip_version;
    preds.push((f) => f.IP !== undefined && v.includes(f.IP.ipVersion));
  }
  if (preds.length === 0) return () => true;
  return (f) => {
    for (const p of preds) if (!p(f)) return false;
    return true;
  };
}

/** Compiles a filter set; throws FLOW_FILTER_INVALID naming the field (e.g. `allowlist[1].source_ip[0]`). */
export function compileFilter(set: FlowFilterSet): Pred {
  const allow = (set.allowlist ?? []).map((f, i) => compileOne(f, `allowlist[${i}]`));
  const deny = (set.denylist ?? []).map((f, i) => compileOne(f, `denylist[${i}]`));
  if (allow.length === 0 && deny.length === 0) return () => true;
  return (f) => (allow.length === 0 || allow.some((p) => p(f))) && !deny.some((p) => p(f));
}
