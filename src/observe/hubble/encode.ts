/**
 * GetFlowsResponse bytes written straight from our FlowRecord: the agent's
 * Observer API encodes each flow once, without the protojson object and
 * the reflective fromJson/toBinary round trip (about 10x the cost).
 *
 *   FlowRecord --encodeRecord--> protobuf bytes (field numbers of proto/flow/flow.proto, observer.proto)
 *              `-- a field this writer does not know --> undefined: the caller uses the reflective path
 *
 * Same meaning as hubbleRecord (json.ts) then fromJson/toBinary: what Hubble
 * has no field for stays out (drop_reason_detail, rule, endpoints'
 * node_name, HTTP headers); proto3 zero values are left out as toBinary
 * does. test/observe/hubble/encode.test.ts decodes both and compares.
 */
import type { FlowRecord } from "../flow.js";
import { each, enumField, timestamp, Unsupported, writerAt, type Obj, type Writer } from "./proto-writer.js";

const ports = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "source_port") w.uint(1, v);
    else if (k === "destination_port") w.uint(2, v);
    else if (k === "flags") w.message(3, v, tcpFlags, 3);
    else throw new Unsupported();
  });

const FLAGS = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR", "NS"];
const tcpFlags = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    const i = FLAGS.indexOf(k);
    if (i < 0) throw new Unsupported();
    w.bool(i + 1, v);
  });

const icmp = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "type") w.uint(1, v);
    else if (k === "code") w.uint(2, v);
    else throw new Unsupported();
  });

const L4: Record<string, [number, (w: Writer, o: Obj) => void]> = {
  TCP: [1, ports],
  UDP: [2, ports],
  ICMPv4: [3, icmp],
  ICMPv6: [4, icmp],
  SCTP: [5, ports],
};

function layer4(w: Writer, o: Obj): void {
  each(o, (k, v) => {
    const c = L4[k];
    if (c === undefined) throw new Unsupported();
    w.message(c[0], v, c[1], 2);
  });
}

const ip = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "source") w.string(1, v);
    else if (k === "destination") w.string(2, v);
    else if (k === "ipVersion") enumField(w, 3, "flow.IPVersion", v);
    else if (k === "encrypted") w.bool(4, v);
    else throw new Unsupported();
  });

const workload = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "name") w.string(1, v);
    else if (k === "kind") w.string(2, v);
    else throw new Unsupported();
  });

const endpoint = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "ID") w.uint(1, v);
    else if (k === "identity") w.uint(2, v);
    else if (k === "namespace") w.string(3, v);
    else if (k === "labels") w.strings(4, v);
    else if (k === "pod_name") w.string(5, v);
    else if (k === "workloads" && Array.isArray(v)) for (const x of v) w.message(6, x, workload, 3);
    else if (k === "cluster_name") w.string(7, v);
    else if (k !== "node_name") throw new Unsupported(); // ours: Hubble's Endpoint has no node
  });

const service = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "name") w.string(1, v);
    else if (k === "namespace") w.string(2, v);
    else throw new Unsupported();
  });

const dns = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "query") w.string(1, v);
    else if (k === "ips") w.strings(2, v);
    else if (k === "ttl") w.uint(3, v);
    else if (k === "cnames") w.strings(4, v);
    else if (k === "observation_source") w.string(5, v);
    else if (k === "rcode") w.uint(6, v);
    else if (k === "qtypes") w.strings(7, v);
    else if (k === "rrtypes") w.strings(8, v);
    else throw new Unsupported();
  });

const http = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "code") w.uint(1, v);
    else if (k === "method") w.string(2, v);
    else if (k === "url") w.string(3, v);
    else if (k === "protocol") w.string(4, v);
    else if (k !== "headers") throw new Unsupported(); // header values never leave (secrets)
  });

const kafka = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "error_code") w.int(1, v);
    else if (k === "api_version") w.int(2, v);
    else if (k === "api_key") w.string(3, v);
    else if (k === "correlation_id") w.int(4, v);
    else if (k === "topic") w.string(5, v);
    else throw new Unsupported();
  });

const layer7 = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "type") enumField(w, 1, "flow.L7FlowType", v);
    else if (k === "latency_ns") w.uint(2, v);
    else if (k === "dns") w.message(100, v, dns, 2);
    else if (k === "http") w.message(101, v, http, 2);
    else if (k === "kafka") w.message(102, v, kafka, 2);
    else throw new Unsupported();
  });

const eventType = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "type") w.int(1, v);
    else if (k === "sub_type") w.int(2, v);
    else throw new Unsupported();
  });

const policy = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "name") w.string(1, v);
    else if (k === "namespace") w.string(2, v);
    else if (k === "labels") w.strings(3, v);
    else if (k === "revision") w.uint(4, v);
    else if (k === "kind") w.string(5, v);
    else throw new Unsupported();
  });

const traceParent = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "trace_id") w.string(1, v);
    else throw new Unsupported();
  });

const traceContext = (w: Writer, o: Obj): void =>
  each(o, (k, v) => {
    if (k === "parent") w.message(1, v, traceParent, 2);
    else throw new Unsupported();
  });

const boolValue = (w: Writer, o: Obj): void => w.bool(1, o["value"]);

const POLICY_FIELDS: Record<string, number> = {
  egress_allowed_by: 21001,
  ingress_allowed_by: 21002,
  egress_denied_by: 21004,
  ingress_denied_by: 21005,
};

function flow(w: Writer, o: Obj): void {
  each(o, (k, v) => {
    switch (k) {
      case "time":
        return w.message(1, {}, (t) => timestamp(t, v), 1);
      case "verdict":
        return enumField(w, 2, "flow.Verdict", v);
      case "drop_reason":
        return w.uint(3, v);
      case "IP":
        return w.message(5, v, ip, 1);
      case "l4":
        return w.message(6, v, layer4, 1);
      case "source":
        return w.message(8, v, endpoint, 1);
      case "destination":
        return w.message(9, v, endpoint, 1);
      case "Type":
        return enumField(w, 10, "flow.FlowType", v);
      case "node_name":
        return w.string(11, v);
      case "source_names":
        return w.strings(13, v);
      case "destination_names":
        return w.strings(14, v);
      case "l7":
        return w.message(15, v, layer7, 1);
      case "event_type":
        return w.message(19, v, eventType, 1);
      case "source_service":
        return w.message(20, v, service, 1);
      case "destination_service":
        return w.message(21, v, service, 1);
      case "traffic_direction":
        return enumField(w, 22, "flow.TrafficDirection", v);
      case "policy_match_type":
        return w.uint(23, v);
      case "trace_observation_point":
        return enumField(w, 24, "flow.TraceObservationPoint", v);
      case "drop_reason_desc":
        return enumField(w, 25, "flow.DropReason", v);
      case "is_reply":
        if (typeof v !== "boolean") throw new Unsupported();
        return w.message(26, { value: v }, boolValue, 1);
      case "proxy_port":
        return w.uint(29, v);
      case "trace_context":
        return w.message(30, v, traceContext, 1);
      case "uuid":
        return w.string(34, v);
      case "auth_type":
        return enumField(w, 35, "flow.AuthType", v);
      case "node_labels":
        return w.strings(37, v);
      case "Summary":
        return w.string(100000, v);
      case "drop_reason_detail":
      case "rule":
        return; // ours: Hubble has no field for them
      default: {
        const f = POLICY_FIELDS[k];
        if (f === undefined || !Array.isArray(v)) throw new Unsupported();
        for (const p of v) w.message(f, p, policy, 1);
      }
    }
  });
}

/** The record as GetFlowsResponse bytes; undefined when it holds something this writer does not know. */
export function encodeRecord(r: FlowRecord): Uint8Array | undefined {
  if (!("flow" in r)) return undefined; // lost events are rare: the reflective path
  const w = writerAt(0);
  w.pos = 0;
  try {
    w.message(1, r.flow, flow, 0);
    w.string(1000, r.node_name);
    w.message(1001, {}, (t) => timestamp(t, r.time), 0);
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
  return Uint8Array.prototype.slice.call(w.buf, 0, w.pos);
}
