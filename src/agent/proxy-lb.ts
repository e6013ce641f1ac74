/**
 * What the node's proxy needs to balance lb-l7 services per request
 * (`service.cilium.io/lb-l7: enabled`): each such frontend, its backends, and
 * which backends each possible client may reach.
 *
 *   LB controller (the lb-l7 frontends) + PolicyEngine + the node's endpoints
 *     --buildLbServices--> ProxyLbService[] (in the proxy snapshot, proxy/lb/services.ts)
 *
 * The kernel judges a service connection after its DNAT, on the backend
 * (compile-lb-policy.ts). An lb-l7 connection has no DNAT: it goes to the proxy,
 * and the proxy's own connection to the backend leaves as the proxy (its group),
 * not as the client. So the judgement moves here, with the same policy: for every
 * client identity of this node (its endpoints, and the node itself) and every
 * backend, the client's egress towards the backend's identity and the backend's
 * ingress from the client's identity (PolicyEngine.decide, as `membrane policy trace`).
 * Fail closed: a pair that needs the L7 proxy on either side (L7 rules on the backend
 * or the client), or mutual authentication, is not reachable through the balancer;
 * an identity with no entry reaches nothing.
 * Cost: clients (distinct identities) x backends decisions per lb-l7 frontend, at
 * every enforce that changed something; lb-l7 services are few.
 */
import type { DatapathEndpoint } from "../datapath/types.js";
import type { LbFrontend } from "../datapath/lb-types.js";
import { ID } from "../identity/reserved.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { PeerRef } from "../policy/query.js";
import type { ProxyLbService } from "../proxy/lb/services.js";

/** An lb-l7 frontend of one service (`namespace/name`). */
export interface LbL7Frontend {
  readonly service: string;
  readonly frontend: LbFrontend;
}

function reachable(engine: PolicyEngine, from: PeerRef, ip: string, port: number): boolean {
  try {
    const d = engine.decide({ from, to: { kind: "ip", ip }, proto: "TCP", port });
    return d.verdict === "allow" && d.egress.l7 === undefined && d.ingress.l7 === undefined;
  } catch {
    return false; // an endpoint gone meanwhile: fail closed
  }
}

export function buildLbServices(
  engine: PolicyEngine,
  endpoints: readonly DatapathEndpoint[],
  frontends: readonly LbL7Frontend[],
): ProxyLbService[] {
  if (frontends.length === 0) return [];
  // Endpoints with the same identity share their policy (Cilium's SelectorPolicy): one decision each.
  const clients = new Map<number, PeerRef>([[ID.host, { kind: "host" }]]);
  for (const ep of endpoints) {
    if (clients.has(ep.identity)) continue;
    const slash = ep.name.indexOf("/");
    clients.set(ep.identity, { kind: "endpoint", namespace: ep.name.slice(0, slash), name: ep.name.slice(slash + 1) }); // prettier-ignore
  }
  return frontends
    .filter((f) => f.frontend.ip !== undefined)
    .map(({ service, frontend: f }) => ({
      name: service,
      ip: f.ip as string,
      port: f.port,
      backends: f.backends.map((b) => ({ ip: b.ip, port: b.port })),
      allowed: [...clients].map(([identity, from]) => ({
        identity,
        backends: f.backends.flatMap((b, i) => (reachable(engine, from, b.ip, b.port) ? [i] : [])),
      })),
    }));
}
