/**
 * A container chained after `bridge`, made enforceable: its host veth leaves
 * the bridge and becomes a routed point-to-point link, as `ptp` makes one.
 *
 *   before:  container eth0 ── vethX ── bridge br (gateway 10.89.0.1) ── node
 *            (its packets reach the inet hooks with iifname = br, for every port alike)
 *   after:   container eth0 ── vethX ── node        10.89.0.5/32 dev vethX, proxy_arp (and proxy_ndp
 *            for the bridge's IPv6 addresses) on vethX; br keeps its addresses
 *            (its packets reach the inet hooks with iifname = vethX: the endpoint's own dispatch)
 *
 * Why not a bridge-family table that matches the port: the inet hooks would
 * still see the bridge, so compile.ts would need a second dispatch (bridge
 * . source address) for egress, and out_c one more (bridge . destination)
 * for the node's own packets to the container, and the port's L2 identity
 * (source MAC, ARP sender) would need pinning against another port's
 * container taking its address. A routed veth has none of that to add: the
 * endpoint's egress chain checks the source address by veth, ARP and ND
 * answers concern only that veth, and container-to-container traffic is
 * routed through the node like any other (tested in test/cni/bridge-egress.test.ts).
 *
 * The container keeps what `bridge` gave it (address, gateway, routes): the
 * gateway is a local address of the node, answered on vethX. The link and
 * its routes go when the runtime deletes the veth (`bridge` DEL). Cost: the
 * `bridge` plugin's CHECK, which expects the veth on the bridge, fails.
 */
import { MembraneError } from "../errors.js";
import { ip } from "./exec.js";
import { setSysctls } from "./netns.js";

export interface BridgePort {
  /** The host side of the container's veth, a port of `bridge`. */
  host: string;
  bridge: string;
  ipv4: string;
  ipv6?: string;
}

/** Plain names only: they end up in sysctl paths, where "." separates. */
const PLAIN = /^[A-Za-z0-9_-]{1,15}$/;

interface AddrInfo {
  addr_info?: { family?: string; local?: string; scope?: string }[];
}

/** The bridge's global IPv6 addresses (the containers' gateways), answered on the veth by proxy ND. */
async function bridgeAddrs6(bridge: string, netns: string | undefined): Promise<string[]> {
  const out = await ip(["-j", "-6", "addr", "show", "dev", bridge], netns);
  return (JSON.parse(out) as AddrInfo[])
    .flatMap((l) => l.addr_info ?? [])
    .filter((a) => a.scope === "global" && a.local !== undefined)
    .map((a) => a.local as string);
}

/**
 * Takes the port off its bridge and routes the container's addresses to it. Undone by restoreBridgePort.
 * `peers`: the other routed ports of the same bridge. IPv4 needs nothing for them (proxy ARP answers
 * by route), IPv6 does: Linux proxies ND only for listed addresses, and a container sends neighbour
 * solicitations for the others of its on-link /64, so each port proxies the others' addresses.
 */
export async function routeBridgePort(
  p: BridgePort,
  netns: string | undefined,
  peers: readonly { host: string; ipv6?: string }[] = [],
): Promise<void> {
  if (!PLAIN.test(p.host) || !PLAIN.test(p.bridge))
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot route bridge port ${JSON.stringify(p.host)} of ${JSON.stringify(p.bridge)}: an unusual interface name`,
    );
  await ip(["link", "set", "dev", p.host, "nomaster"], netns);
  await setSysctls(netns, {
    [`net.ipv4.conf.${p.host}.proxy_arp`]: "1",
    // Proxy answers are otherwise delayed by up to 0.8 s (proxy_delay 80): a container's first packets would wait.
    [`net.ipv4.neigh.${p.host}.proxy_delay`]: "0",
    [`net.ipv4.conf.${p.host}.send_redirects`]: "0",
    ...(p.ipv6 !== undefined
      ? { [`net.ipv6.conf.${p.host}.proxy_ndp`]: "1", [`net.ipv6.neigh.${p.host}.proxy_delay`]: "0" }
      : {}),
  });
  await ip(["-4", "route", "replace", `${p.ipv4}/32`, "dev", p.host, "scope", "link"], netns);
  if (p.ipv6 !== undefined) {
    await ip(["-6", "route", "replace", `${p.ipv6}/128`, "dev", p.host], netns);
    for (const a of await bridgeAddrs6(p.bridge, netns))
      await ip(["-6", "neigh", "replace", "proxy", a, "dev", p.host], netns);
    for (const peer of peers) {
      if (peer.ipv6 === undefined || !PLAIN.test(peer.host)) continue;
      await ip(["-6", "neigh", "replace", "proxy", peer.ipv6, "dev", p.host], netns);
      await ip(["-6", "neigh", "replace", "proxy", p.ipv6, "dev", peer.host], netns);
    }
  }
}

/** A routed port's IPv6 address is no longer proxied on the other ports (its container is gone). */
export async function forgetBridgePort(
  ipv6: string,
  netns: string | undefined,
  peers: readonly { host: string }[],
): Promise<void> {
  for (const peer of peers)
    if (PLAIN.test(peer.host))
      await ip(["-6", "neigh", "del", "proxy", ipv6, "dev", peer.host], netns).catch(() => undefined);
}

/** Puts the port back on its bridge (a failed adoption), best effort: the runtime's DEL deletes the veth anyway. */
export async function restoreBridgePort(
  p: BridgePort,
  netns: string | undefined,
  peers: readonly { host: string }[] = [],
): Promise<void> {
  if (p.ipv6 !== undefined) await forgetBridgePort(p.ipv6, netns, peers);
  await ip(["-4", "route", "del", `${p.ipv4}/32`, "dev", p.host], netns).catch(() => undefined);
  if (p.ipv6 !== undefined)
    await ip(["-6", "route", "del", `${p.ipv6}/128`, "dev", p.host], netns).catch(() => undefined);
  await ip(["link", "set", "dev", p.host, "master", p.bridge], netns).catch(() => undefined);
}
