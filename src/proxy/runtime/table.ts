/**
 * The proxy's copy of the node's L7 policy: what the agent pushes (a
 * ProxySnapshot), indexed for the per-connection and per-request lookups.
 *
 *   agent --ProxySnapshot--> PolicyTable
 *     identify(client, originalDst, proto) -> ConnectionInfo (who talks to whom, whose policy)
 *     forConnection(key)                   -> stages: client's egress L7, server's ingress L7
 *
 * Identities come from the same ipcache the kernel holds, so the proxy
 * names a peer exactly as the kernel did when it decided to redirect:
 * a local endpoint, else an exact address (the HostMap, kept by deltas and
 * shared by every table), else the snapshot's prefixes (flattened into
 * disjoint intervals, binary search), else world. The L7 entries are the
 * redirect segments of each local endpoint, with the spec the engine's
 * MapState gives there: a specific identity first, then identity 0, as in
 * the kernel's two-step lookup.
 */
import { parseAddr } from "../../labels/cidr.js";
import { flattenIpcache, type IdentityInterval } from "../../ipcache/intervals.js";
import { WORLD_IDENTITY } from "../../abi/marks.js";
import { ID } from "../../identity/reserved.js";
import type { L7Spec } from "../../policy/mapstate.js";
import { LbServiceIndex, type ProxyLbService } from "../lb/services.js";
import type { ConnectionInfo, L7Direction, L7LookupKey, L7LookupResult, L7PolicyLookup } from "../types.js";

const HOST_IDENTITY = ID.host;

export interface ProxyEndpoint {
  /** `namespace/name`. */
  readonly name: string;
  readonly id: number;
  readonly identity: number;
  readonly ipv4?: string;
  readonly ipv6?: string;
}

/** One redirect segment of one endpoint direction, with its L7 rules. */
export interface ProxyL7Entry {
  readonly endpoint: string;
  readonly direction: L7Direction;
  /** Peer identity; 0 = any. */
  readonly identity: number;
  /** 6 TCP, 17 UDP. */
  readonly proto: number;
  readonly lo: number;
  readonly hi: number;
  readonly spec: L7Spec;
  readonly allowAll: boolean;
}

export interface ProxySnapshot {
  readonly version: number;
  /** Prefixes (CIDR, FQDN; all of the ipcache when the agent sends no hosts table). */
  readonly ipcache: readonly { readonly prefix: string; readonly identity: number }[];
  readonly endpoints: readonly ProxyEndpoint[];
  readonly l7: readonly ProxyL7Entry[];
  /** The lb-l7 services this node's proxy balances per request (absent: none). */
  readonly lb?: readonly ProxyLbService[];
}

export interface Addr {
  readonly address: string;
  readonly port: number;
}

/** `::ffff:10.0.0.1` (a v4 client on a dual-stack socket) -> `10.0.0.1`. */
export function plainAddress(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

function find(list: readonly IdentityInterval[], v: bigint): number {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const it = list[mid] as IdentityInterval;
    if (v < it.lo) hi = mid - 1;
    else if (v > it.hi) lo = mid + 1;
    else return it.identity;
  }
  return WORLD_IDENTITY;
}

/** Exact addresses -> identity (the proxy's HostMap). */
export interface HostLookup {
  get(address: string): number | undefined;
}

export class PolicyTable implements L7PolicyLookup {
  readonly version: number;
  private readonly v4: IdentityInterval[];
  private readonly v6: IdentityInterval[];
  private readonly byIp = new Map<string, ProxyEndpoint>();
  private readonly entries = new Map<string, ProxyL7Entry[]>();
  /** The lb-l7 services (proxy/lb/). */
  readonly lb: LbServiceIndex;

  constructor(
    s: ProxySnapshot,
    private readonly hosts?: HostLookup,
  ) {
    this.version = s.version;
    this.lb = new LbServiceIndex(s.lb ?? []);
    const flat = flattenIpcache(s.ipcache, WORLD_IDENTITY);
    this.v4 = flat.v4;
    this.v6 = flat.v6;
    for (const ep of s.endpoints) {
      if (ep.ipv4 !== undefined) this.byIp.set(ep.ipv4, ep);
      if (ep.ipv6 !== undefined) this.byIp.set(canon6(ep.ipv6), ep);
    }
    for (const e of s.l7) {
      const k = `${e.endpoint}|${e.direction}`;
      const list = this.entries.get(k) ?? [];
      list.push(e);
      this.entries.set(k, list);
    }
  }

  endpointByIp(address: string): ProxyEndpoint | undefined {
    const a = plainAddress(address);
    return this.byIp.get(a.includes(":") ? canon6(a) : a);
  }

  identityOf(address: string): number {
    const a = plainAddress(address);
    const ep = this.endpointByIp(a);
    if (ep) return ep.identity;
    const host = this.hosts?.get(a);
    if (host !== undefined) return host;
    const p = parseAddr(a);
    if (!p) return WORLD_IDENTITY;
    return find(p.family === 4 ? this.v4 : this.v6, p.value);
  }

  /** The L7 entry of one endpoint direction for (peer identity, proto, port): specific identity first. */
  entry(
    endpoint: string,
    dir: L7Direction,
    peer: number,
    proto: number,
    port: number,
  ): ProxyL7Entry | undefined {
    const list = this.entries.get(`${endpoint}|${dir}`);
    if (!list) return undefined;
    const hit = (id: number): ProxyL7Entry | undefined =>
      list.find((e) => e.identity === id && e.proto === proto && e.lo <= port && port <= e.hi);
    return hit(peer) ?? (peer !== 0 ? hit(0) : undefined);
  }

  /**
   * Who a redirected connection is between and whose policy applies: the
   * client's egress when it is a local endpoint with L7 rules there, else the
   * server's ingress. undefined when neither end has L7 rules for it (the
   * kernel's redirect and this table disagree: fail closed).
   */
  identify(client: Addr, dst: Addr, proto: number, fromHost = false): ConnectionInfo | undefined {
    // The node's own connections (marked by the kernel) are `host`, whatever source address it chose.
    const src = fromHost ? undefined : this.endpointByIp(client.address);
    const dstEp = this.endpointByIp(dst.address);
    const srcIdentity = fromHost ? HOST_IDENTITY : this.identityOf(client.address);
    const dstIdentity = this.identityOf(dst.address);
    const l7proto = proto === 17 ? ("UDP" as const) : ("TCP" as const);
    const base = {
      srcIdentity,
      dstIdentity,
      originalDst: { host: plainAddress(dst.address), port: dst.port },
      proto: l7proto,
    };
    if (src && this.entry(src.name, "egress", dstIdentity, proto, dst.port)) {
      return {
        ...base,
        direction: "egress",
        endpoint: src.name,
        ...(dstEp ? { peerEndpoint: dstEp.name } : {}),
      };
    }
    if (dstEp && this.entry(dstEp.name, "ingress", srcIdentity, proto, dst.port))
      return { ...base, direction: "ingress", endpoint: dstEp.name };
    return undefined;
  }

  forConnection(key: L7LookupKey): L7LookupResult | undefined {
    const proto = key.proto === "UDP" ? 17 : 6;
    const stage = (ep: string, dir: L7Direction): L7LookupResult | undefined => {
      const e = this.entry(ep, dir, dir === "egress" ? key.dstIdentity : key.srcIdentity, proto, key.dstPort);
      return e ? { spec: e.spec, allowAll: e.allowAll } : undefined;
    };
    const first = stage(key.endpoint, key.direction);
    const second =
      key.direction === "egress" && key.peerEndpoint !== undefined
        ? stage(key.peerEndpoint, "ingress")
        : undefined;
    if (!first) return second;
    return second ? { ...first, also: second } : first;
  }
}

function canon6(a: string): string {
  const p = parseAddr(a);
  return p && p.family === 6 ? p.value.toString(16) : a;
}
