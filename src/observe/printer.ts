/**
 * Flow records as text, in the three forms of `hubble observe -o`:
 *
 *   compact  Nov 23 12:00:01.123: default/tiefighter:43210 (ID:257) -> default/deathstar:80 (ID:256)
 *            policy-verdict:L3-L4 INGRESS DENIED (TCP Flags: SYN) by default/rule1 spec.ingress[0]
 *   json     one record per line as Hubble's protojson ({"flow": {...}} or {"lost_events": {...}})
 *   table    TIMESTAMP  SOURCE  DESTINATION  TYPE  VERDICT  SUMMARY, columns padded
 *
 * Compact and table add, after Hubble's text, what decided a drop: `by
 * <policy> <rule path>` for a deny rule, `by default deny`, or the reason.
 */
import { RESERVED_NAMES } from "../identity/reserved.js";
import { hubbleJsonLine } from "./hubble/json.js";
import { MembraneError } from "../errors.js";
import {
  EVENT_TYPE,
  isFlowRecord,
  l4Ports,
  POLICY_MATCH,
  type Endpoint,
  type Flow,
  type FlowRecord,
} from "./flow.js";

export type OutputFormat = "compact" | "json" | "table";

export interface PrintOptions {
  /** Timestamps in UTC rather than local time (tests, logs shipped elsewhere). */
  utc?: boolean;
}

export function parseOutputFormat(s: string): OutputFormat {
  if (s === "compact" || s === "json" || s === "table") return s;
  throw new MembraneError(
    "FLOW_FILTER_INVALID",
    `Cannot use output format "${s}": it is not compact, json or table`,
    {
      location: { path: "-o" },
      hint: "Use -o compact, -o json or -o table.",
    },
  );
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const two = (n: number): string => String(n).padStart(2, "0");

/** "Nov 23 12:00:01.123" (Hubble's StampMilli). */
export function stamp(iso: string, utc = false): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const [mo, day, h, mi, s, ms] = utc
    ? [
        d.getUTCMonth(),
        d.getUTCDate(),
        d.getUTCHours(),
        d.getUTCMinutes(),
        d.getUTCSeconds(),
        d.getUTCMilliseconds(),
      ]
    : [d.getMonth(), d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  return `${MONTHS[mo]} ${two(day)} ${two(h)}:${two(mi)}:${two(s)}.${String(ms).padStart(3, "0")}`;
}

function side(f: Flow, which: "source" | "destination"): string {
  const ep: Endpoint | undefined = f[which];
  const ports = l4Ports(f.l4);
  const port =
    ports === undefined ? undefined : which === "source" ? ports.source_port : ports.destination_port;
  const ip = f.IP?.[which];
  let host: string;
  if (ep?.pod_name !== undefined && ep.pod_name !== "") host = `${ep.namespace ?? ""}/${ep.pod_name}`;
  else if (ip !== undefined) host = port !== undefined && ip.includes(":") ? `[${ip}]` : ip;
  else host = "?";
  const id = ep?.identity;
  const idText = id === undefined ? "" : ` (${RESERVED_NAMES.get(id) ?? `ID:${id}`})`;
  const node = ep?.node_name === undefined ? "" : ` on ${ep.node_name}`; // cluster mode
  return `${host}${port === undefined ? "" : `:${port}`}${idText}${node}`;
}

const MATCH_NAMES = new Map<number, string>(Object.entries(POLICY_MATCH).map(([k, v]) => [v, k]));

/** The TYPE column: "policy-verdict:L3-L4 INGRESS", "Policy denied", "http-request". */
function typeText(f: Flow): string {
  const t = f.event_type.type;
  if (t === EVENT_TYPE.policyVerdict)
    return `policy-verdict:${MATCH_NAMES.get(f.policy_match_type ?? 0) ?? "none"} ${f.traffic_direction}`;
  if (t === EVENT_TYPE.drop) return f.drop_reason_desc ?? "drop";
  if (t === EVENT_TYPE.trace) return "to-endpoint";
  if (t === EVENT_TYPE.l7) {
    const kind = f.l7?.http ? "http" : f.l7?.dns ? "dns" : f.l7?.kafka ? "kafka" : "l7";
    return `${kind}-${f.l7?.type === "RESPONSE" ? "response" : "request"}`;
  }
  return `event-${t}`;
}

function verdictText(f: Flow): string {
  if (f.event_type.type !== EVENT_TYPE.policyVerdict || f.verdict === "REDIRECTED") return f.verdict;
  return f.verdict === "DROPPED" ? "DENIED" : f.verdict === "AUDIT" ? "AUDITED" : "ALLOWED";
}

const DESC_TEXT: Readonly<Record<string, string>> = {
  INVALID_SOURCE_IP: "Invalid source ip",
  INVALID_PACKET_DROPPED: "Invalid packet",
  POLICY_DENIED: "Policy denied",
  POLICY_DENY: "Policy denied by denylist",
  AUTH_REQUIRED: "Authentication required",
};

function decidedBy(f: Flow): string {
  // The proxy's verdicts: its reason in words ("no HTTP rule matched").
  if (f.Type === "L7") return f.verdict === "FORWARDED" ? "" : ` (${f.drop_reason_detail ?? "denied"})`;
  if (f.rule !== undefined) {
    const name = f.rule.namespace === undefined ? f.rule.name : `${f.rule.namespace}/${f.rule.name}`;
    return ` by ${name} ${f.rule.path}`;
  }
  // Flows read back from Hubble's JSON have no `rule`: the policy Hubble names.
  const by = f.ingress_denied_by?.[0] ?? f.egress_denied_by?.[0];
  if (by !== undefined) return ` by ${by.namespace === undefined ? by.name : `${by.namespace}/${by.name}`}`;
  if (f.drop_reason_desc === "POLICY_DENIED" || (f.verdict === "AUDIT" && f.policy_match_type === 0))
    return " by default deny";
  return "";
}

/**
 * Flows carry bytes from the network (Kafka topics, pod and label names from
 * the API, proxy reasons): text output goes to terminals, so control
 * characters are shown escaped (`\x1b`), never sent raw. JSON output is
 * escaped by JSON itself.
 */
export function terminalSafe(s: string): string {
  return s.replace(
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

/** One line in hubble's compact form. */
export function formatCompact(r: FlowRecord, o: PrintOptions = {}): string {
  return terminalSafe(compactLine(r, o));
}

function compactLine(r: FlowRecord, o: PrintOptions): string {
  if (!isFlowRecord(r)) return `EVENTS LOST: ${r.lost_events.source} ${r.lost_events.num_events_lost}`;
  const f = r.flow;
  const arrow = f.is_reply === true ? "<-" : f.is_reply === false ? "->" : "<>";
  const type =
    f.event_type.type === EVENT_TYPE.drop
      ? (DESC_TEXT[f.drop_reason_desc ?? ""] ?? typeText(f))
      : typeText(f);
  const summary = f.Summary === undefined || f.Summary === "" ? "" : ` (${f.Summary})`;
  return `${stamp(f.time, o.utc)}: ${side(f, "source")} ${arrow} ${side(f, "destination")} ${type} ${verdictText(f)}${summary}${decidedBy(f)}`;
}

/** Hubble's protojson of a GetFlowsResponse (hubble/json.ts): what `hubble observe -o json` prints. */
export function formatJson(r: FlowRecord): string {
  return hubbleJsonLine(r);
}

const HEADER = ["TIMESTAMP", "SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"];

function row(r: FlowRecord, o: PrintOptions): string[] {
  if (!isFlowRecord(r))
    return [
      stamp(r.time, o.utc),
      "",
      "",
      "EVENTS LOST",
      r.lost_events.source,
      String(r.lost_events.num_events_lost),
    ];
  const f = r.flow;
  return [
    stamp(f.time, o.utc),
    side(f, "source"),
    side(f, "destination"),
    typeText(f),
    verdictText(f),
    `${f.Summary ?? ""}${decidedBy(f)}`,
  ];
}

/** A table with padded columns (for a finite set of records). */
export function formatTable(records: readonly FlowRecord[], o: PrintOptions = {}): string {
  const rows = [HEADER, ...records.map((r) => row(r, o).map(terminalSafe))];
  const widths = HEADER.map((_, c) => Math.max(...rows.map((x) => (x[c] ?? "").length)));
  return rows
    .map((x) =>
      x
        .map((cell, c) => (c === x.length - 1 ? cell : cell.padEnd(widths[c] ?? 0)))
        .join("   ")
        .trimEnd(),
    )
    .join("\n");
}

/** Formats records in one of the three output formats (one string per line, table as a whole). */
export function formatRecords(
  records: readonly FlowRecord[],
  format: OutputFormat,
  o: PrintOptions = {},
): string {
  if (format === "table") return formatTable(records, o);
  return records.map((r) => (format === "json" ? formatJson(r) : formatCompact(r, o))).join("\n");
}
