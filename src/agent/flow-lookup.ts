/**
 * What flows need to name endpoints, identities and rules: called per flow
 * event, so map lookups only, label strings rendered once per identity.
 */
import type { ServiceFrontends } from "../lb/frontends.js";
import type { Identity } from "../identity/allocator.js";
import type { FlowLookup } from "../observe/index.js";
import { matchTypeAt } from "../policy/match-type.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { RuleOrigin } from "../policy/types.js";
import type { EndpointsController } from "./controllers/endpoints.js";
import type { EndpointRecordV1 } from "./records.js";

export function flowLookup(
  engine: () => PolicyEngine,
  endpoints: EndpointsController,
  ruleOrigins: ReadonlyMap<number, RuleOrigin>,
  nodeOfIp?: (ip: string) => string | undefined,
  encryptedPeer?: (ip: string, tcp: boolean, identity: number) => boolean,
  namesOfIp?: (ip: string) => readonly string[] | undefined,
  services?: () => ServiceFrontends,
  tunnelOrigin?: FlowLookup["tunnelOrigin"],
): FlowLookup {
  const info = (rec: EndpointRecordV1) => {
    const ep = engine().getEndpoint(rec.namespace, rec.name);
    return {
      name: rec.name,
      namespace: rec.namespace,
      labels: ep ? identityLabelTexts(ep.identity) : [],
      identity: ep?.identity.id ?? 0,
    };
  };
  return {
    endpointById: (id) => {
      const rec = endpoints.recordById(id);
      return rec ? info(rec) : undefined;
    },
    endpointByIp: (ip) => {
      const rec = endpoints.recordByIp(ip);
      return rec ? { ...info(rec), id: rec.id } : undefined;
    },
    identityById: (id) => {
      const i = engine().identity(id);
      return i ? { labels: identityLabelTexts(i) } : undefined;
    },
    ipIdentity: (ip) => engine().ipcache.lookup(ip).identity,
    ...(nodeOfIp ? { nodeOfIp } : {}),
    ...(encryptedPeer ? { encryptedPeer } : {}),
    ...(namesOfIp ? { namesOfIp } : {}),
    ...(tunnelOrigin ? { tunnelOrigin } : {}),
    ...(services
      ? {
          serviceAt: (ip: string, proto: number, port: number, nodePort?: boolean) =>
            nodePort === true ? services().atNodePort(proto, port) : services().at(ip, proto, port),
        }
      : {}),
    // Policy verdicts only (a connection's first packet): the endpoint's MapState, as the kernel's lookup.
    matchTypeOf: (q) => {
      const rec = endpoints.recordById(q.endpointId);
      const dir = q.ingress ? "ingress" : "egress";
      return rec && matchTypeAt(engine(), rec, dir, q.remoteIdentity, q.proto, q.port);
    },
    ruleById: (id) => {
      const o = ruleOrigins.get(id);
      if (!o) return undefined;
      return {
        policy: {
          kind: o.policy.kind,
          name: o.policy.name,
          ...(o.policy.namespace ? { namespace: o.policy.namespace } : {}),
        },
        path: o.path,
        revision: engine().revision,
      };
    },
  };
}

export function labelText(l: { source: string; key: string; value: string }): string {
  return `${l.source}:${l.key}${l.value ? "=" + l.value : ""}`;
}

const labelTexts = new WeakMap<Identity, readonly string[]>();
/** `source:key=value` strings of an (immutable) identity, rendered once. */
function identityLabelTexts(i: Identity): readonly string[] {
  let t = labelTexts.get(i);
  if (!t) labelTexts.set(i, (t = [...i.labels].map(labelText)));
  return t;
}
