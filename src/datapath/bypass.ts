/**
 * Which established connections bypass the proxy after a redirect was added.
 * Pure: conntrack entries and the desired state in, connections to reset out.
 *
 *   prev DatapathState ─┐
 *   next DatapathState ─┴─ redirectCandidates ──> endpoint directions with a new redirect segment
 *                                                      │ (none: nothing to do, no conntrack dump)
 *   conntrack entries (node netns) ─────────── bypassing ──> [{entry, sides: [{endpoint, dir}]}]
 *
 * A connection is accepted as "ct state established" before any policy
 * lookup, and only the first packet of a connection can be DNATed to the
 * proxy, so a connection established under an L3/L4 allow keeps going
 * straight to its peer after an L7 rule covers it. Such a connection is one
 * whose conntrack mark has no redirect bit (it was not handed to the proxy),
 * that is not one of the proxy's own upstream connections, and that the
 * next state redirects on one of its ends: the endpoint that is its source
 * (egress: peer = destination) or its destination (ingress: peer = source),
 * looked up as the kernel does (the peer's identity from the ipcache, or
 * host for the node's own addresses; specific identity before any, a
 * protocol's segment before the all-protocols one). Nothing else matches:
 * other peers, ports, endpoints and directions are never touched.
 */
import { addrString, parseAddr } from "../labels/cidr.js";
import { flattenIpcache, type IdentityInterval } from "../ipcache/intervals.js";
import {
  CT_PROXY_UPSTREAM,
  CT_REDIRECT_DNS,
  CT_REDIRECT_L7,
  WORLD_IDENTITY,
  type DatapathState,
  type DirectionPolicy,
  type PolicySegment,
} from "./types.js";

export type Dir = "in" | "out";

/** A conntrack entry as the dump gives it: the original direction's tuple and the ct mark. */
export interface CtEntry {
  proto: number;
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  mark: number;
}

/** One end of a bypassing connection that a redirect now covers. */
export interface BypassSide {
  endpointId: number;
  dir: Dir;
  /** The endpoint's address and port in this connection, and its peer's. */
  local: { address: string; port: number };
  peer: { address: string; port: number };
}

export interface Bypass {
  entry: CtEntry;
  sides: BypassSide[];
}

/** Conntrack marks of connections that never need a reset: already proxied, or the proxy's own. */
export const SKIP_MARK_BITS = CT_REDIRECT_L7 | CT_REDIRECT_DNS | CT_PROXY_UPSTREAM;

const segKey = (s: PolicySegment): string => `${s.identity}/${s.proto}/${s.lo}-${s.hi}/${s.proxy ?? "l7"}`;

/**
 * Endpoint directions (`<id>:in`, `<id>:out`) of `next` holding a redirect
 * segment that `prev` did not hold in the same form. With no `prev` (the
 * agent's first enforce: what the kernel held is unknown), every direction
 * with a redirect.
 */
export function redirectCandidates(prev: DatapathState | undefined, next: DatapathState): Set<string> {
  // The very same frozen list (DesiredBuilder, when no endpoint changed: an ipcache change)
  // holds the very same endpoints: nothing new, without looking at the node's endpoints.
  if (prev && prev.endpoints === next.endpoints && Object.isFrozen(next.endpoints)) return new Set();
  const before = new Map<string, Set<string>>();
  // An endpoint handed over as the very same object did not change (DesiredBuilder): skip it.
  const prevById = new Map((prev?.endpoints ?? []).map((ep) => [ep.id, ep]));
  const changed = next.endpoints.filter((ep) => !prev || prevById.get(ep.id) !== ep);
  const changedIds = new Set(changed.map((ep) => ep.id));
  for (const ep of (prev?.endpoints ?? []).filter((e) => changedIds.has(e.id))) {
    for (const [dir, pol] of [
      ["in", ep.ingress],
      ["out", ep.egress],
    ] as const) {
      before.set(`${ep.id}:${dir}`, new Set(pol.segments.filter((s) => s.action === "redirect").map(segKey)));
    }
  }
  const out = new Set<string>();
  for (const ep of changed) {
    for (const [dir, pol] of [
      ["in", ep.ingress],
      ["out", ep.egress],
    ] as const) {
      const had = prev ? before.get(`${ep.id}:${dir}`) : undefined;
      if (pol.segments.some((s) => s.action === "redirect" && !had?.has(segKey(s))))
        out.add(`${ep.id}:${dir}`);
    }
  }
  return out;
}

/** The segment the kernel's lookups pick for (peer identity, proto, port), or undefined (default). */
export function segmentFor(
  policy: DirectionPolicy,
  identity: number,
  proto: number,
  port: number,
): PolicySegment | undefined {
  const hit = (id: number, p: number): PolicySegment | undefined =>
    policy.segments.find(
      (s) => s.identity === id && s.proto === p && (p === 0 || (s.lo <= port && port <= s.hi)),
    );
  return hit(identity, proto) ?? hit(identity, 0) ?? hit(0, proto) ?? hit(0, 0);
}

/** Longest-prefix identity of an address (the kernel's ipcache lookup). */
class IdentityLookup {
  private readonly v4: IdentityInterval[];
  private readonly v6: IdentityInterval[];
  private readonly host: number;
  private readonly hosts: DatapathState["hosts"];
  constructor(
    state: DatapathState,
    private readonly local: ReadonlySet<string>,
  ) {
    const f = flattenIpcache(state.ipcache, WORLD_IDENTITY);
    this.v4 = f.v4;
    this.v6 = f.v6;
    this.host = state.hostIdentity;
    this.hosts = state.hosts;
  }

  of(address: string): number {
    if (this.local.has(canon(address))) return this.host;
    const a = parseAddr(address);
    if (!a) return WORLD_IDENTITY;
    // Exact addresses (endpoints, nodes) override prefixes, as in the kernel's lookups.
    const exact = this.hosts?.get(addrString(a.family, a.value));
    if (exact !== undefined) return exact;
    const list = a.family === 4 ? this.v4 : this.v6;
    let lo = 0;
    let hi = list.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const iv = list[mid] as IdentityInterval;
      if (a.value < iv.lo) hi = mid - 1;
      else if (a.value > iv.hi) lo = mid + 1;
      else return iv.identity;
    }
    return WORLD_IDENTITY;
  }
}

/**
 * The entries that bypass a redirect `state` now holds on one of their ends,
 * limited to the endpoint directions in `candidates`. `localAddresses` are
 * the node's own addresses (peer identity host).
 */
export function bypassing(
  entries: readonly CtEntry[],
  state: DatapathState,
  candidates: ReadonlySet<string>,
  localAddresses: Iterable<string> = [],
): Bypass[] {
  if (candidates.size === 0) return [];
  const byIp = new Map<string, DatapathState["endpoints"][number]>();
  for (const ep of state.endpoints) {
    if (ep.ipv4 !== undefined) byIp.set(canon(ep.ipv4), ep);
    if (ep.ipv6 !== undefined) byIp.set(canon(ep.ipv6), ep);
  }
  const ids = new IdentityLookup(state, new Set([...localAddresses].map(canon)));
  const out: Bypass[] = [];
  for (const e of entries) {
    if ((e.mark & SKIP_MARK_BITS) !== 0) continue;
    const sides: BypassSide[] = [];
    const check = (epAddr: string, dir: Dir, peerAddr: string): void => {
      const ep = byIp.get(canon(epAddr));
      if (!ep || !candidates.has(`${ep.id}:${dir}`)) return;
      const seg = segmentFor(dir === "in" ? ep.ingress : ep.egress, ids.of(peerAddr), e.proto, e.dstPort);
      if (seg?.action !== "redirect") return;
      const local = dir === "out" ? { address: e.src, port: e.srcPort } : { address: e.dst, port: e.dstPort };
      const peer = dir === "out" ? { address: e.dst, port: e.dstPort } : { address: e.src, port: e.srcPort };
      sides.push({ endpointId: ep.id, dir, local, peer });
    };
    check(e.src, "out", e.dst);
    check(e.dst, "in", e.src);
    if (sides.length > 0) out.push({ entry: e, sides });
  }
  return out;
}

/** One spelling per address (conntrack and the agent may write IPv6 differently). */
function canon(address: string): string {
  const a = parseAddr(address);
  return a ? `${a.family}:${a.value.toString(16)}` : address;
}
