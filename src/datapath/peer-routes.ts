/**
 * Routes to the pods of other nodes (cluster mode), in the node's namespace.
 *
 *   peers [{name, ip, podCidrs}] --plan(actual)--> ip -batch / bridge -batch lines --> kernel
 *
 *   native: <peer pod CIDR> via <peer node address> proto 211
 *   encrypted (the peer publishes a key of this node's --encryption mode):
 *           <peer pod CIDR> dev <wg interface | ipsec0> proto 211
 *   vxlan:  one device (VNI, UDP 8472 as Cilium, MTU = underlay MTU - 50 (IPv6 underlay: 70),
 *           no learning, no multicast), and per peer:
 *             route  <peer pod CIDR> via <CIDR's network address> dev <vx> onlink proto 211
 *             neigh  <CIDR's network address> lladdr <peer VTEP MAC> dev <vx> nud permanent
 *             fdb    <peer VTEP MAC> dev <vx> dst <peer node address> self permanent
 *
 * A node's VTEP MAC is derived from its underlay address (vtepMac), so peers need nothing
 * but the node registry to reach it. The network address of a peer's pod CIDR is only a
 * next-hop name (never assigned to anything): the neighbour entry maps it to the peer's
 * MAC, the FDB entry that MAC to the peer's underlay address.
 *
 * Reconcile, not script: one process reads what is there (routes of protocol 211, the
 * device, its permanent neighbours and FDB), the difference is applied (at most one
 * `ip -batch` for the device, one `bridge -batch`, one `ip -batch` for neighbours and
 * routes); nothing differs -> nothing runs. New routes go in before stale ones go
 * (make-before-break); a route of protocol 211 no peer wants is deleted.
 */
import { createHash } from "node:crypto";
import { MembraneError } from "../errors.js";
import { addrString, familyWidth, parseAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { run } from "./exec.js";
import { inNetns } from "./rtnl.js";

/** The route protocol that marks Membrane's peer routes (unassigned in rtnetlink.h). */
export const PEER_ROUTE_PROTO = 211;
export const VXLAN_PORT = 8472;
export const VXLAN_DEVICE = "membrane_vx";

export interface PeerNode {
  readonly name: string;
  /** The peer's underlay address (same family as the local one). */
  readonly ip: string;
  readonly podCidrs: readonly string[];
  /** Route its pod CIDRs through this device (the WireGuard interface) instead of native/VXLAN. */
  readonly dev?: string;
}

export interface PeerRoutingConfig {
  /** The node's named namespace; absent = the agent's own. */
  readonly netns?: string;
  readonly mode: "native" | "vxlan";
  /** This node's underlay address (the VXLAN source; finds the underlay device). */
  readonly localIp: string;
  readonly vni?: number;
  readonly port?: number;
}

/** What the kernel holds, as read by readPeerState. */
export interface PeerKernelState {
  /** Routes of protocol 211 by destination prefix. */
  readonly routes: ReadonlyMap<string, { gateway?: string; dev?: string; onlink: boolean }>;
  readonly device?: { vni?: number; port?: number; local?: string; mtu?: number; mac?: string; up: boolean };
  /** The underlay device (holds localIp) and its MTU. */
  readonly underlay?: { ifname: string; mtu: number };
  /** Permanent neighbours of the VXLAN device: address -> MAC. */
  readonly neighs: ReadonlyMap<string, string>;
  /** FDB entries of the VXLAN device: MAC -> destination. */
  readonly fdb: ReadonlyMap<string, string>;
}

export interface PeerPlan {
  /** `ip -batch` lines for the VXLAN device, run first. */
  readonly device: string[];
  readonly bridge: string[];
  /** `ip -batch` lines: neighbours, routes (new first), then stale ones and a device no longer used. */
  readonly routes: string[];
}

/** The VTEP MAC of the node with underlay address `ip`: locally administered, 02:4d + 4 bytes of its hash. */
export function vtepMac(ip: string): string {
  const h = createHash("sha256").update(canonAddr(ip)).digest();
  return ["02", "4d", ...[...h.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
}

function canonAddr(ip: string): string {
  const a = parseAddr(ip);
  if (!a) throw new MembraneError("CLUSTER_INVALID", `Cannot route to ${JSON.stringify(ip)}: not an address`);
  return addrString(a.family, a.value);
}

/** A prefix as `ip -j route` prints it (a host route without its length). */
function routeKey(p: Prefix): string {
  const a = addrString(p.family, p.addr);
  return p.bits === familyWidth(p.family) ? a : `${a}/${p.bits}`;
}

interface DesiredRoute {
  readonly dst: string;
  readonly gateway: string;
  /** vxlan: the next hop's MAC and the peer's underlay address. */
  readonly mac?: string;
  readonly peerIp: string;
  /** Through a device (the WireGuard interface), no gateway. */
  readonly dev?: string;
}

/** The routes the peers want, one per pod CIDR (families the mode can carry); `skipped` says why others are not. */
export function desiredRoutes(
  cfg: PeerRoutingConfig,
  peers: readonly PeerNode[],
): { routes: DesiredRoute[]; skipped: string[] } {
  const local = parseAddr(cfg.localIp);
  const routes: DesiredRoute[] = [];
  const skipped: string[] = [];
  for (const peer of peers) {
    const ip = parseAddr(peer.ip);
    if (!local || !ip || ip.family !== local.family) {
      skipped.push(`${peer.name}: underlay address ${peer.ip} is not of the local node's family`);
      continue;
    }
    const peerIp = addrString(ip.family, ip.value);
    for (const c of peer.podCidrs) {
      const p = parsePrefix(c);
      if (!p) {
        skipped.push(`${peer.name}: pod CIDR ${JSON.stringify(c)} is not a prefix`);
        continue;
      }
      const network = addrString(p.family, p.addr);
      if (peer.dev !== undefined) {
        routes.push({ dst: routeKey(p), gateway: "", dev: peer.dev, peerIp });
      } else if (cfg.mode === "vxlan") {
        routes.push({ dst: routeKey(p), gateway: network, mac: vtepMac(peerIp), peerIp });
      } else if (p.family === ip.family) {
        routes.push({ dst: routeKey(p), gateway: peerIp, peerIp });
      } else {
        skipped.push(`${peer.name}: pod CIDR ${c} needs an IPv${p.family} underlay address (native routing)`);
      }
    }
  }
  return { routes, skipped };
}

/** The lines that take the kernel from `actual` to what `peers` want (empty lists: nothing to do). */
export function planPeerRoutes(
  cfg: PeerRoutingConfig,
  peers: readonly PeerNode[],
  actual: PeerKernelState,
): PeerPlan {
  const { routes } = desiredRoutes(cfg, peers);
  const dev = VXLAN_DEVICE;
  const device: string[] = [];
  const bridge: string[] = [];
  const add: string[] = [];
  const del: string[] = [];
  if (cfg.mode === "vxlan") {
    const u = actual.underlay;
    if (!u) {
      throw new MembraneError(
        "NETNS_FAILED",
        `Cannot set up the VXLAN device: no link of the node holds its address ${cfg.localIp}`,
        { hint: "--node-ip must be an address of the node's underlay interface" },
      );
    }
    const vni = cfg.vni ?? 1;
    const port = cfg.port ?? VXLAN_PORT;
    const local = canonAddr(cfg.localIp);
    const mtu = u.mtu - (local.includes(":") ? 70 : 50);
    const mac = vtepMac(local);
    const d = actual.device;
    if (d && (d.vni !== vni || d.port !== port || d.local !== local)) device.push(`link del ${dev}`);
    if (!d || device.length > 0) {
      device.push(
        `link add ${dev} type vxlan id ${vni} local ${local} dstport ${port} nolearning dev ${u.ifname}`,
      );
    }
    if (!d || device.length > 0 || d.mtu !== mtu || d.mac !== mac || !d.up) {
      device.push(`link set ${dev} address ${mac} mtu ${mtu} up`);
    }
    const fresh = device.length > 0 && device[0]?.startsWith("link del") === true;
    const fdb = new Map<string, string>();
    const neighs = new Map<string, string>();
    for (const r of routes) {
      if (r.mac === undefined) continue;
      fdb.set(r.mac, r.peerIp);
      neighs.set(r.gateway, r.mac);
    }
    const was = (m: ReadonlyMap<string, string>): ReadonlyMap<string, string> =>
      fresh || !d ? new Map() : m;
    for (const [m, dst] of fdb) {
      if (was(actual.fdb).get(m) !== dst)
        bridge.push(`fdb replace ${m} dev ${dev} dst ${dst} self permanent`);
    }
    for (const m of was(actual.fdb).keys()) if (!fdb.has(m)) bridge.push(`fdb del ${m} dev ${dev} self`);
    for (const [a, m] of neighs) {
      if (was(actual.neighs).get(a) !== m)
        add.push(`neigh replace ${a} lladdr ${m} dev ${dev} nud permanent`);
    }
    for (const a of was(actual.neighs).keys()) if (!neighs.has(a)) del.push(`neigh del ${a} dev ${dev}`);
  }
  const want = new Set<string>();
  for (const r of routes) {
    want.add(r.dst);
    const now = actual.routes.get(r.dst);
    const vx = r.mac !== undefined;
    const same =
      now !== undefined &&
      (r.dev !== undefined
        ? now.gateway === undefined && now.dev === r.dev
        : now.gateway === r.gateway &&
          (vx ? now.dev === dev && now.onlink && device.length === 0 : now.dev !== dev));
    if (!same) {
      add.push(
        r.dev !== undefined
          ? `route replace ${r.dst} dev ${r.dev} proto ${PEER_ROUTE_PROTO}`
          : vx
            ? `route replace ${r.dst} via ${r.gateway} dev ${dev} onlink proto ${PEER_ROUTE_PROTO}`
            : `route replace ${r.dst} via ${r.gateway} proto ${PEER_ROUTE_PROTO}`,
      );
    }
  }
  for (const dst of actual.routes.keys()) {
    if (!want.has(dst)) del.push(`route del ${dst} proto ${PEER_ROUTE_PROTO}`);
  }
  if (cfg.mode !== "vxlan" && actual.device) del.push(`link del ${dev}`);
  return { device, bridge, routes: [...add, ...del] };
}

const SEP = "\u001e";

/** Reads routes of protocol 211, the VXLAN device, its neighbours and FDB, and the underlay link: one process. */
export async function readPeerState(netns: string | undefined, localIp: string): Promise<PeerKernelState> {
  const local = canonAddr(localIp);
  const dev = VXLAN_DEVICE;
  const sections = [
    `ip -j -d link show dev ${dev} 2>/dev/null || echo '[]'`,
    `ip -j addr show to ${local}`,
    `ip -j -4 route show proto ${PEER_ROUTE_PROTO}`,
    `ip -j -6 route show proto ${PEER_ROUTE_PROTO}`,
    `ip -j neigh show dev ${dev} nud permanent 2>/dev/null || echo '[]'`,
    `bridge -j fdb show dev ${dev} 2>/dev/null || echo '[]'`,
  ];
  const script = sections.join(`; printf '${SEP}'; `);
  const out = await run([...inNetns(netns), "sh", "-c", script], {
    what: `read the peer routes of the node${netns ? ` (netns ${netns})` : ""}`,
  });
  const parts = out.split(SEP).map((s) => {
    const t = s.trim();
    return (t === "" ? [] : JSON.parse(t)) as Record<string, unknown>[];
  });
  const [links = [], addrs = [], r4 = [], r6 = [], neigh = [], fdb = []] = parts;
  const routes = new Map<string, { gateway?: string; dev?: string; onlink: boolean }>();
  for (const r of [...r4, ...r6]) {
    if (typeof r["dst"] !== "string") continue;
    const flags = Array.isArray(r["flags"]) ? (r["flags"] as unknown[]) : [];
    routes.set(r["dst"] === "default" ? "default" : normPrefix(r["dst"]), {
      ...(typeof r["gateway"] === "string" ? { gateway: canonAddr(r["gateway"]) } : {}),
      ...(typeof r["dev"] === "string" ? { dev: r["dev"] } : {}),
      onlink: flags.includes("onlink"),
    });
  }
  const l = links[0];
  const info = (l?.["linkinfo"] ?? {}) as { info_kind?: string; info_data?: Record<string, unknown> };
  const data = info.info_data ?? {};
  const u = addrs[0];
  return {
    routes,
    ...(l
      ? {
          device: {
            ...(typeof data["id"] === "number" ? { vni: data["id"] } : {}),
            ...(typeof data["port"] === "number" ? { port: data["port"] } : {}),
            ...(typeof data["local"] === "string" ? { local: canonAddr(data["local"]) } : {}),
            ...(typeof l["mtu"] === "number" ? { mtu: l["mtu"] } : {}),
            ...(typeof l["address"] === "string" ? { mac: l["address"] } : {}),
            up: Array.isArray(l["flags"]) && (l["flags"] as unknown[]).includes("UP"),
          },
        }
      : {}),
    ...(u && typeof u["ifname"] === "string" && typeof u["mtu"] === "number"
      ? { underlay: { ifname: u["ifname"], mtu: u["mtu"] } }
      : {}),
    neighs: new Map(
      neigh
        .filter((n) => typeof n["dst"] === "string" && typeof n["lladdr"] === "string")
        .map((n) => [canonAddr(n["dst"] as string), n["lladdr"] as string]),
    ),
    fdb: new Map(
      fdb
        .filter((f) => typeof f["mac"] === "string" && typeof f["dst"] === "string")
        .map((f) => [f["mac"] as string, canonAddr(f["dst"] as string)]),
    ),
  };
}

function normPrefix(s: string): string {
  const p = parsePrefix(s, true);
  return p ? routeKey(p) : s;
}

/**
 * Makes the node's peer routes what `peers` want; returns the lines it ran (none when the
 * kernel already held it: a restarted agent changes nothing). A refusal names the line.
 */
export async function reconcilePeerRoutes(
  cfg: PeerRoutingConfig,
  peers: readonly PeerNode[],
): Promise<string[]> {
  const plan = planPeerRoutes(cfg, peers, await readPeerState(cfg.netns, cfg.localIp));
  const where = cfg.netns ? ` (netns ${cfg.netns})` : "";
  const batch = async (cmd: "ip" | "bridge", lines: readonly string[], what: string): Promise<void> => {
    if (lines.length === 0) return;
    await run([...inNetns(cfg.netns), cmd, "-batch", "-"], {
      stdin: lines.join("\n") + "\n",
      what: what + where,
    });
  };
  await batch("ip", plan.device, "set up the VXLAN device");
  await batch("bridge", plan.bridge, "set the VXLAN forwarding entries of peers");
  await batch("ip", plan.routes, "set the routes to peers' pod CIDRs");
  return [...plan.device, ...plan.bridge.map((l) => `bridge ${l}`), ...plan.routes];
}
