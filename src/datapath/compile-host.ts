/**
 * The host firewall (Cilium's host policies, `nodeSelector`): traffic to and from
 * the node itself, judged by the peer's identity from the ipcache, exactly as an
 * endpoint's is, by the host policies that select this node.
 *
 *   hfw_in_c (hook input, priority 0)                 hfw_out_c (hook output, priority -140)
 *     loopback, established/related: accept             loopback, established/related: accept
 *     ND/MLD, the VXLAN port: accept                     ND/MLD, the VXLAN port, the proxy's group: accept
 *     connections redirected to the proxy: accept        to a local endpoint's interface: accept
 *     mark = ipcache[saddr] (then _host[saddr])          (that endpoint's ingress decides: out_c)
 *     goto host_in                                       goto host_out (which jumps mark_dst)
 *   host_in / host_out: a policy group's chains and maps (policy-groups.ts), logging as `h0`
 *
 * Only the input and output hooks: traffic forwarded to and from pods never meets
 * them. A direction no host policy selects (no segment, not enforced, not audited)
 * has no chain and no hook at all: with no host policy for this node, the table
 * holds nothing of the host firewall, so an agent in the machine's root namespace
 * changes nothing for the machine's own traffic until a host policy selects it.
 *
 * Always allowed, as in Cilium: replies of established connections (conntrack),
 * the node's loopback, the node's own connections to its local endpoints (their
 * ingress policy decides them, out_c), connections the datapath redirected to the
 * node's proxy (already decided as pod traffic) and the proxy's own upstream
 * connections (to the original destination of a decided connection), the overlay's
 * encapsulated packets, IPv6 neighbour discovery. Traffic from local pods to the
 * node is judged twice: by the pod's egress (pre_c) and by the host's ingress here.
 */
import { compileGroup, groupKey, hex, type GroupContext, type GroupPart } from "./policy-groups.js";
import { invalid } from "./compile-error.js";
import type { NftChain, NftMap } from "./model.js";
import { CT_REDIRECT_DNS, CT_REDIRECT_L7, type HostFirewall } from "./types.js";

const ND_TYPES = "icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, 143 } accept";

/** Base chain names (they hook only when their direction has a policy). */
export const HOST_CHAINS = { in: "hfw_in_c", out: "hfw_out_c" } as const;

/** The checks of a host firewall's own fields (segments are checked where they compile). */
export function checkHost(h: HostFirewall): void {
  if (
    h.tunnelPort !== undefined &&
    (!Number.isInteger(h.tunnelPort) || h.tunnelPort < 1 || h.tunnelPort > 65535)
  )
    throw invalid("host.tunnelPort", `${h.tunnelPort} is not a port (1..65535)`);
}

/** The host firewall's maps and chains; none when no host policy selects the node. Pure. */
export function compileHost(
  h: HostFirewall | undefined,
  ctx: GroupContext,
): { maps: NftMap[]; chains: NftChain[] } {
  const maps: NftMap[] = [];
  const chains: NftChain[] = [];
  if (!h) return { maps, chains };
  checkHost(h);
  const always = [
    "ct state established,related accept",
    ND_TYPES,
    ...(h.tunnelPort !== undefined ? [`udp dport ${h.tunnelPort} accept`] : []),
  ];
  const inKey = groupKey("in", h.ingress);
  if (inKey !== undefined) {
    const g = compileGroup("host", "in", inKey, h.ingress, ctx, "host.ingress");
    add(g, maps, chains);
    chains.push({
      name: HOST_CHAINS.in,
      base: "type filter hook input priority 0; policy accept;",
      rules: [
        'iifname "lo" accept',
        ...always,
        // Redirected to the node's proxy (nat_c's DNAT): decided in pre_c as pod traffic.
        `ct mark & ${hex(CT_REDIRECT_L7 | CT_REDIRECT_DNS)} != 0 accept`,
        "meta mark set ip saddr map @ipcache4",
        "meta mark set ip6 saddr map @ipcache6",
        "meta mark set ip saddr map @ipcache4_host",
        "meta mark set ip6 saddr map @ipcache6_host",
        `goto ${g.name}`,
      ],
    });
  }
  const outKey = groupKey("out", h.egress);
  if (outKey !== undefined) {
    const g = compileGroup("host", "out", outKey, h.egress, ctx, "host.egress");
    add(g, maps, chains);
    chains.push({
      // Before the output NAT (-100): a redirect decided here (host DNS rules) is DNATed there.
      name: HOST_CHAINS.out,
      base: "type filter hook output priority -140; policy accept;",
      rules: [
        'oifname "lo" accept',
        ...always,
        ...(ctx.proxy ? [`meta skgid ${ctx.proxy.gid} accept`] : []),
        // To a local endpoint: its ingress decides (out_c, through the same map).
        "oifname @ingress_ep accept",
        `goto ${g.name}`,
      ],
    });
  }
  return { maps, chains };
}

function add(g: GroupPart, maps: NftMap[], chains: NftChain[]): void {
  maps.push(...g.maps);
  chains.push(...g.chains);
}
