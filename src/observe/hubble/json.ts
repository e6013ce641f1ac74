/**
 * Flow records as Hubble's protojson (GetFlowsResponse), the form of
 * `membrane observe -o json` and the flow export; and back.
 *
 *   FlowRecord (ours) --hubbleRecord--> {"flow": {...}, "node_name", "time"}   strict-parses as observer.GetFlowsResponse
 *   GetFlowsResponse JSON (protojson, proto names) --recordFromHubble--> FlowRecord
 *
 * What Hubble has no field for stays out: our `drop_reason_detail` (the
 * reason in words), `rule` (the rule element that decided) and the
 * endpoints' `node_name` (cluster mode: the node a peer runs on); the deciding
 * policy stays in Hubble's `*_denied_by` / `*_allowed_by`. uint64 fields
 * (`latency_ns`, `revision`, `num_events_lost`) are strings, as protojson
 * writes them. HTTP headers never leave (they may hold secrets).
 */
import type { Endpoint, Flow, FlowRecord, Layer7, LostEventSource, PolicyRefJSON } from "../flow.js";

export type JsonObject = { [k: string]: unknown };

function policies(list: readonly PolicyRefJSON[]): JsonObject[] {
  return list.map((p) => (p.revision === undefined ? { ...p } : { ...p, revision: String(p.revision) }));
}

function layer7(l7: Layer7): JsonObject {
  const out: JsonObject = { ...l7 };
  if (l7.latency_ns !== undefined) out["latency_ns"] = String(l7.latency_ns);
  if (l7.http !== undefined && "headers" in l7.http) {
    const { headers: _h, ...http } = l7.http as unknown as JsonObject;
    out["http"] = http;
  }
  return out;
}

/** An endpoint without our `node_name` (the node a peer runs on, cluster mode): Hubble's Endpoint has no such field. */
function endpoint(e: Endpoint): JsonObject {
  const { node_name: _n, ...rest } = e;
  return rest;
}

/** One flow as Hubble's protojson object (proto field names). */
export function hubbleFlow(flow: Flow): JsonObject {
  const { drop_reason_detail: _d, rule: _r, ...rest } = flow;
  const out: JsonObject = rest;
  if (flow.source !== undefined) out["source"] = endpoint(flow.source);
  if (flow.destination !== undefined) out["destination"] = endpoint(flow.destination);
  if (flow.l7 !== undefined) out["l7"] = layer7(flow.l7);
  for (const k of [
    "egress_allowed_by",
    "ingress_allowed_by",
    "egress_denied_by",
    "ingress_denied_by",
  ] as const) {
    const v = flow[k];
    if (v !== undefined) out[k] = policies(v);
  }
  return out;
}

/** One record as Hubble's GetFlowsResponse in protojson. */
export function hubbleRecord(r: FlowRecord): JsonObject {
  const head =
    "flow" in r
      ? { flow: hubbleFlow(r.flow) }
      : {
          lost_events: {
            source: r.lost_events.source,
            num_events_lost: String(r.lost_events.num_events_lost),
          },
        };
  return r.node_name === undefined
    ? { ...head, time: r.time }
    : { ...head, node_name: r.node_name, time: r.time };
}

/** `-o json` and export lines: one GetFlowsResponse per line. */
export function hubbleJsonLine(r: FlowRecord): string {
  return JSON.stringify(hubbleRecord(r));
}

const num = (v: unknown): number | undefined =>
  typeof v === "string" || typeof v === "number" ? Number(v) : undefined;

/**
 * A GetFlowsResponse as protojson (toJson with proto field names) -> our
 * record, for printing what a Hubble server sent. Numbers from uint64 strings.
 */
export function recordFromHubble(o: JsonObject): FlowRecord | undefined {
  const time = typeof o["time"] === "string" ? o["time"] : new Date().toISOString();
  const node =
    typeof o["node_name"] === "string" && o["node_name"] !== "" ? { node_name: o["node_name"] } : {};
  const lost = o["lost_events"] as JsonObject | undefined;
  if (lost !== undefined) {
    const source = typeof lost["source"] === "string" ? lost["source"] : "UNKNOWN_LOST_EVENT_SOURCE";
    return {
      lost_events: {
        source: source as LostEventSource,
        num_events_lost: num(lost["num_events_lost"]) ?? 0,
      },
      ...node,
      time,
    };
  }
  const f = o["flow"] as JsonObject | undefined;
  if (f === undefined) return undefined;
  const flow = { ...f } as JsonObject;
  if (typeof flow["time"] !== "string") flow["time"] = time;
  if (flow["event_type"] === undefined) flow["event_type"] = { type: 0 };
  const l7 = flow["l7"] as JsonObject | undefined;
  if (l7 !== undefined && l7["latency_ns"] !== undefined)
    flow["l7"] = { ...l7, latency_ns: num(l7["latency_ns"]) };
  for (const k of ["egress_allowed_by", "ingress_allowed_by", "egress_denied_by", "ingress_denied_by"]) {
    const v = flow[k];
    if (Array.isArray(v))
      flow[k] = (v as JsonObject[]).map((p) =>
        p["revision"] === undefined ? p : { ...p, revision: num(p["revision"]) },
      );
  }
  return { flow: flow as unknown as Flow, ...node, time };
}
