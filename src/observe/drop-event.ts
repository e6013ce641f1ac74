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

export function dropEventOf(f: Flow): Flow | undefined {
  if (f.event_type.type !== EVENT_TYPE.policyVerdict || f.verdict !== "DROPPED") return undefined;
  const { policy_match_type: _m, ...rest } = f;
  return {
    ...rest,
    uuid: randomUUID(),
    event_type: { type: EVENT_TYPE.drop, sub_type: f.drop_reason ?? 0 },
  };
}
