/**
 * A side of a flow question (PeerRef) resolved to its identity: the host, a
 * local endpoint by name, or an address (a local endpoint's, else the
 * ipcache's answer: remote endpoint, node, CIDR/FQDN identity or world).
 */
import type { Identity } from "../identity/allocator.js";
import { ID } from "../identity/reserved.js";
import type { IPCache } from "../ipcache/ipcache.js";
import { parseAddr } from "../labels/cidr.js";
import { MembraneError } from "../errors.js";
import type { EndpointTable } from "./endpoint-table.js";
import type { ResolvedPeer } from "./engine-types.js";
import type { PeerRef } from "./query.js";

export interface PeerWorld {
  readonly table: EndpointTable;
  readonly ipcache: IPCache;
  identity(id: number): Identity | undefined;
}

export function resolvePeerIn(w: PeerWorld, p: PeerRef): ResolvedPeer {
  if (p.kind === "host") return { identity: w.identity(ID.host) as Identity, isHost: true };
  if (p.kind === "endpoint") {
    const ep = w.table.find(p.name, p.namespace);
    const out = { identity: ep.identity, endpoint: ep, isHost: false };
    return ep.spec.ips[0] !== undefined ? { ...out, ip: ep.spec.ips[0] } : out;
  }
  if (!parseAddr(p.ip)) throw new MembraneError("QUERY_INVALID", `Cannot use "${p.ip}" as an address`);
  const { identity, entry } = w.ipcache.lookup(p.ip);
  if (entry?.source === "endpoint") {
    const ep = w.table.byAddress(p.ip);
    if (ep) return { identity: ep.identity, endpoint: ep, isHost: false, ip: p.ip };
  }
  const ident = w.identity(identity) as Identity;
  return { identity: ident, isHost: identity === ID.host, ip: p.ip };
}
