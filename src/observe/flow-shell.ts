/**
 * A new Flow object, ready to take its fields by assignment (enrich.ts, per packet).
 *
 * A literal `{time, uuid, verdict}` that then grows by twenty fields reallocates its property
 * store several times per flow, and that garbage is what the collector spent its time on.
 * Objects made by a constructor get room for their fields inside the object: V8 sizes it from
 * the `this.x =` assignments in the constructor's body (counted as written, hence the branch
 * that never runs and names every field of a flow), then trims the unused room after a few
 * objects. The prototype is Object.prototype: to every reader (JSON, spread, deepStrictEqual)
 * a flow stays a plain object, and only the fields assigned exist, in the order assigned.
 */
import type { Flow, Verdict } from "./flow.js";

type Shell = Record<string, unknown>;

function FlowShell(this: Shell, time: string, uuid: string, verdict: Verdict): void {
  this["time"] = time;
  this["uuid"] = uuid;
  this["verdict"] = verdict;
  if (verdict === ("" as Verdict)) {
    // Never runs (see above): every field a flow of enrich.ts may get, in Hubble's order.
    this.drop_reason = this.drop_reason_desc = this.IP = this.l4 = this.source = this.destination = 0;
    this.Type = this.node_name = this.source_names = this.destination_names = this.event_type = 0;
    this.source_service = this.destination_service = this.traffic_direction = this.auth_type = 0;
    this.node_labels = this.policy_match_type = this.is_reply = this.egress_allowed_by = 0;
    this.ingress_allowed_by = this.egress_denied_by = this.ingress_denied_by = this.Summary = 0;
    this.drop_reason_detail = this.rule = 0;
  }
}
FlowShell.prototype = Object.prototype;

const Ctor = FlowShell as unknown as new (time: string, uuid: string, verdict: Verdict) => Flow;

/** A flow with `time`, `uuid` and `verdict`; the caller assigns the rest (in Hubble's order). */
export function newFlow(time: string, uuid: string, verdict: Verdict): Flow {
  return new Ctor(time, uuid, verdict);
}
