/**
 * A policy denial as Hubble shows it: the policy-verdict event (type 5) and,
 * beside it, a drop event (type 1, sub_type = the drop reason's code).
 *
 *   Flow {event_type 5, verdict DROPPED, drop_reason_desc POLICY_DENY, ingress_denied_by [...]}
 *     --dropEventOf--> Flow {event_type {type 1, sub_type 181}, verdict DROPPED, same sides and policy, new uuid}
 *
 * Only for policy verdicts that dropped (audit verdicts forward the packet, so
 * no drop happened). The drop event keeps the deciding policy (`*_denied_by`)
 * and has no policy_match_type (Hubble sets it on policy verdicts only).
 */
import { randomUUID } from "node:crypto";
import { EVENT_TYPE, type Flow } from "./flow.js";
import { newFlow } from "./flow-shell.js";

const DROP_EVENTS = new Map<number, Flow["event_type"]>();

/** The event_type of a drop with this code: one frozen object per code (shared by flows). */
export function dropEventType(code: number): Flow["event_type"] {
  let e = DROP_EVENTS.get(code);
  if (e === undefined) DROP_EVENTS.set(code, (e = Object.freeze({ type: EVENT_TYPE.drop, sub_type: code })));
  return e;
}

/** Copied field by field into a new flow (the same order; no object rest and spread per denial). */
export function dropEventOf(f: Flow): Flow | undefined {
  if (f.event_type.type !== EVENT_TYPE.policyVerdict || f.verdict !== "DROPPED") return undefined;
  const out = newFlow(f.time, randomUUID(), f.verdict) as unknown as Record<string, unknown>;
  const src = f as unknown as Record<string, unknown>;
  for (const k in src) {
    if (k === "time" || k === "uuid" || k === "verdict" || k === "policy_match_type") continue;
    out[k] = k === "event_type" ? dropEventType(f.drop_reason ?? 0) : src[k];
  }
  return out as unknown as Flow;
}
