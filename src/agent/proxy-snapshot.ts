/**
 * What the node's proxy needs of the policy: the redirect segments of every
 * local endpoint with their L7 rules, and the ipcache to name peers.
 *
 *   DatapathState (what the kernel redirects) + PolicyEngine (the L7 specs)
 *   + the lb-l7 frontends (proxy-lb.ts: who may reach which backend)
 *     --buildProxySnapshot--> ProxyPush --ProxySupervisor.push--> proxy process
 *
 * The ipcache's exact addresses (`state.hosts`, tens of thousands in a
 * cluster) are passed on as the live table, not copied: the supervisor sends
 * the proxy what changed since it last sent (its journal).
 *
 * Built from the very state the kernel gets, so that every connection the
 * kernel redirects finds its rules in the proxy.
 *
 * ProxySnapshots (the enforcer's) hands back the last snapshot's arrays when
 * neither the state's endpoints nor any endpoint's computed policy changed
 * (only host addresses did): no walk over the endpoints for an address.
 */
import type { DatapathEndpoint, DatapathState } from "../datapath/types.js";
import type { PolicyEngine } from "../policy/engine.js";
import type { ProxyPush } from "../proxy/runtime/supervisor.js";
import type { ProxyL7Entry } from "../proxy/runtime/table.js";
import type { ProxyLbService } from "../proxy/lb/services.js";
import { buildLbServices, type LbL7Frontend } from "./proxy-lb.js";

export function buildProxySnapshot(engine: PolicyEngine, state: DatapathState, version: number): ProxyPush {
  const l7: ProxyL7Entry[] = [];
  for (const ep of state.endpoints) {
    const slash = ep.name.indexOf("/");
    const pol = engine.endpointPolicy(ep.name.slice(0, slash), ep.name.slice(slash + 1));
    for (const [dir, policy, mapState] of [
      ["ingress", ep.ingress, pol.ingress.mapState],
      ["egress", ep.egress, pol.egress.mapState],
    ] as const) {
      for (const seg of policy.segments) {
        if (seg.action !== "redirect") continue;
        const r = mapState.lookup(seg.identity, seg.proto, seg.lo);
        if (r.verdict !== "allow" || !r.l7 || r.l7.conflict) continue;
        l7.push({
          endpoint: ep.name,
          direction: dir,
          identity: seg.identity,
          proto: seg.proto,
          lo: seg.lo,
          hi: seg.hi,
          spec: r.l7.spec,
          allowAll: r.l7.allowAll,
        });
      }
    }
  }
  return {
    version,
    ipcache: state.ipcache,
    endpoints: state.endpoints.map((e) => ({
      name: e.name,
      id: e.id,
      identity: e.identity,
      ...(e.ipv4 !== undefined ? { ipv4: e.ipv4 } : {}),
      ...(e.ipv6 !== undefined ? { ipv6: e.ipv6 } : {}),
    })),
    l7,
    ...(state.hosts ? { hosts: state.hosts } : {}),
  };
}

/** Snapshots that cost what changed: the last one's arrays again when only host addresses changed. */
export class ProxySnapshots {
  private last:
    | {
        readonly engine: PolicyEngine;
        readonly endpoints: readonly DatapathEndpoint[];
        readonly endpointRevision: number;
        readonly push: ProxyPush;
      }
    | undefined;

  build(
    engine: PolicyEngine,
    state: DatapathState,
    version: number,
    lbFrontends: readonly LbL7Frontend[] = [],
  ): ProxyPush {
    const push = this.buildL7(engine, state, version);
    if (lbFrontends.length === 0) return push;
    // Rebuilt at every enforce (lb-l7 services are few); the supervisor sends it only when it changed.
    const lb: ProxyLbService[] = buildLbServices(engine, state.endpoints, lbFrontends);
    return { ...push, lb };
  }

  private buildL7(engine: PolicyEngine, state: DatapathState, version: number): ProxyPush {
    const endpointRevision = engine.stats.endpointRevision;
    const l = this.last;
    // The same endpoint objects (DesiredBuilder) and no endpoint's computed policy (its L7 rules) changed.
    const same =
      l?.engine === engine && l.endpoints === state.endpoints && l.endpointRevision === endpointRevision;
    let push: ProxyPush;
    if (same) {
      const { hosts: _h, ...rest } = l.push;
      push = { ...rest, version, ipcache: state.ipcache, ...(state.hosts ? { hosts: state.hosts } : {}) };
    } else push = buildProxySnapshot(engine, state, version);
    this.last = { engine, endpoints: state.endpoints, endpointRevision, push };
    return push;
  }
}
