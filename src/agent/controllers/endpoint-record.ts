/**
 * An endpoint record as others see it: the API's view (with what its policy
 * enforces), the engine's endpoint spec and the datapath's LocalEndpoint.
 * Shared by the endpoints controller and the CNI attachments.
 */
import type { LocalEndpoint } from "../desired.js";
import type { EndpointRecordV1 } from "../records.js";

export interface EndpointView {
  name: string;
  namespace: string;
  id: number;
  identity: number;
  labels: Record<string, string>;
  ipv4: string;
  ipv6?: string;
  netns: string;
  hostIfname: string;
  /** Named container ports (published to the other nodes in cluster mode). */
  ports?: { name: string; port: number; protocol: "TCP" | "UDP" | "SCTP" }[];
  ingress: { enforced: boolean; entries: number };
  /** `unenforced`: a policy selects it for egress but the datapath cannot enforce it there (why). */
  egress: { enforced: boolean; entries: number; unenforced?: string };
  policyRevision: number;
}

/**
 * An endpoint still on a bridge (adopted by an agent before ports were routed, records.ts
 * `cni.bridge` without `routed`) does not claim egress enforcement.
 */
export function egressView(
  rec: EndpointRecordV1,
  enforced: boolean,
  entries: number,
): EndpointView["egress"] {
  const br = rec.cni?.bridge;
  if (br === undefined || rec.cni?.routed === true || !enforced) return { enforced, entries };
  return {
    enforced: false,
    entries,
    unenforced: `chained after bridge ${br}: its packets reach the node from the bridge, not from its own veth, so its egress policy is not enforced (adopted by an older agent: add the container again)`,
  };
}

export function engineSpec(rec: EndpointRecordV1) {
  return {
    name: rec.name,
    namespace: rec.namespace,
    labels: rec.labels,
    ips: [rec.ipv4, ...(rec.ipv6 ? [rec.ipv6] : [])],
    ...(rec.ports ? { namedPorts: rec.ports } : {}),
  };
}

export function localEndpoint(rec: EndpointRecordV1): LocalEndpoint {
  return {
    namespace: rec.namespace,
    name: rec.name,
    id: rec.id,
    hostIfname: rec.hostIfname,
    ipv4: rec.ipv4,
    ...(rec.ipv6 ? { ipv6: rec.ipv6 } : {}),
  };
}
