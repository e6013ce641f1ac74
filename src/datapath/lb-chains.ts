/**
 * The LB table's declarations (lb-compile.ts): its maps and sets per address family, the chains
 * that never change, and the choice chain a frontend's verdict goes to. Pure.
 *
 *   IPv4: front4 l7front4 ext4 empty4 drop4 nat4 be4 aff4, NodePorts npfront npempty npdrop npnat npbe
 *   IPv6: front6 l7front6 ext6 empty6 drop6 nat6 be6 aff6, NodePorts npfront6 npempty6 npdrop6 npnat6 npbe6
 *
 * ext4/ext6: the LoadBalancer addresses (with a backend, not lb-l7), which clients outside the
 * cluster reach through any node: marked as a NodePort (CT_NODEPORT, masqueraded when the backend is
 * on another node) unless the client is one of this node's pods, whose address policy needs.
 *
 * A family's packets only meet its own sets: `ip daddr` / `ip6 daddr` imply their family in an inet
 * table, and the NodePort lookups (no address in the key) are guarded by `meta nfproto`.
 */
import { CT_REDIRECT_L7 } from "../abi/marks.js";
import { SERVICE_LOG_PREFIX } from "../abi/log-prefix.js";
import { CT_NODEPORT, CT_SERVICE, type LbFrontend } from "./lb-types.js";

/** The Maglev table size (prime, >> backends per service). */
export const MAGLEV_M = 251;
/** The fixed jhash seed: the same on every node, so nodes agree on a flow's backend. */
const MAGLEV_SEED = "0x4d454d42";

const hex = (n: number): string => `0x${n.toString(16).padStart(8, "0")}`;
const SVC = hex(CT_SERVICE);
const NODEPORT = hex(CT_NODEPORT);
const L7LB = hex((CT_SERVICE | CT_REDIRECT_L7) >>> 0);

const V4 = "ipv4_addr . inet_proto . inet_service";
const V6 = "ipv6_addr . inet_proto . inet_service";
const NP = "inet_proto . inet_service";

/** The maps and sets, declared in this order (dependencies: none). */
export const LB_SETS: readonly { name: string; decl: string }[] = [
  { name: "front4", decl: `type ${V4};` },
  { name: "l7front4", decl: `type ${V4};` },
  { name: "ext4", decl: `type ${V4};` },
  { name: "empty4", decl: `type ${V4};` },
  { name: "drop4", decl: `type ${V4};` },
  { name: "nat4", decl: `type ${V4} : verdict;` },
  { name: "be4", decl: `type ${V4} . mark : ipv4_addr . inet_service;` },
  { name: "npfront", decl: `type ${NP};` },
  { name: "npempty", decl: `type ${NP};` },
  { name: "npdrop", decl: `type ${NP};` },
  { name: "npnat", decl: `type ${NP} : verdict;` },
  { name: "npbe", decl: `type ${NP} . mark : ipv4_addr . inet_service;` },
  { name: "front6", decl: `type ${V6};` },
  { name: "l7front6", decl: `type ${V6};` },
  { name: "ext6", decl: `type ${V6};` },
  { name: "empty6", decl: `type ${V6};` },
  { name: "drop6", decl: `type ${V6};` },
  { name: "nat6", decl: `type ${V6} : verdict;` },
  { name: "be6", decl: `type ${V6} . mark : ipv6_addr . inet_service;` },
  { name: "npfront6", decl: `type ${NP};` },
  { name: "npempty6", decl: `type ${NP};` },
  { name: "npdrop6", decl: `type ${NP};` },
  { name: "npnat6", decl: `type ${NP} : verdict;` },
  { name: "npbe6", decl: `type ${NP} . mark : ipv6_addr . inet_service;` },
];

/** The client -> slot memory of affinity services (written by the packet path), per family. */
export const AFFINITY_MAPS: readonly { name: string; decl: string }[] = [
  { name: "aff4", decl: "type ipv4_addr . ipv4_addr . inet_proto . inet_service : mark; flags dynamic,timeout; size 262144;" }, // prettier-ignore
  { name: "aff6", decl: "type ipv6_addr . ipv6_addr . inet_proto . inet_service : mark; flags dynamic,timeout; size 262144;" }, // prettier-ignore
];

/** The names a family's frontend uses: with an address (ClusterIP, LoadBalancer) or a NodePort. */
export function setsOf(
  family: 4 | 6,
  nodePort: boolean,
): {
  front: string;
  empty: string;
  drop: string;
  nat: string;
  be: string;
} {
  const s = family === 4 ? "" : "6";
  return nodePort
    ? { front: `npfront${s}`, empty: `npempty${s}`, drop: `npdrop${s}`, nat: `npnat${s}`, be: `npbe${s}` }
    : { front: `front${family}`, empty: `empty${family}`, drop: `drop${family}`, nat: `nat${family}`, be: `be${family}` }; // prettier-ignore
}

/**
 * The chains that never change (hooks and shared steps). `localCidrs`: the node's pod CIDRs (either
 * family); a NodePort connection to a backend outside them is masqueraded (none given: no masquerade),
 * and so is a LoadBalancer address's from a client outside them (kube-proxy's externalTrafficPolicy
 * Cluster: without it, the backend's node answers the outside client straight, un-DNATed, and the
 * connection never opens).
 * `logGroup`: the NFLOG group of the flow observer; a new connection to a frontend is logged there
 * before its DNAT (`mbr:s:c` / `mbr:s:n`), so that its flows name the service the client dialled
 * (Hubble's destination_service; the policy verdicts that follow see only the backend).
 */
export function fixedChains(
  localCidrs: readonly string[] = [],
  logGroup?: number,
): { name: string; base?: string; rules: string[] }[] {
  const log = (prefix: string): string =>
    logGroup === undefined ? "" : ` log group ${logGroup} prefix "${prefix}"`;
  const np = "fib daddr type local meta l4proto . th dport";
  const classify = (family: 4 | 6): string[] => {
    const ip = family === 4 ? "ip" : "ip6";
    const vip = `${ip} daddr . meta l4proto . th dport`;
    const s = setsOf(family, false);
    const n = setsOf(family, true);
    const nf = `meta nfproto ipv${family} ${np}`;
    const mine = localCidrs.filter((c) => c.includes(":") === (family === 6));
    // Not from this node's pods: those keep their address (the backend's policy judges their identity).
    const ext = mine.length === 0 ? [] : [`${ip} saddr != { ${mine.join(", ")} } ${vip} @ext${family} ct mark set ct mark or ${hex(CT_SERVICE | CT_NODEPORT)}${log(SERVICE_LOG_PREFIX.frontend)} return`]; // prettier-ignore
    return [
      `${vip} @${s.drop} drop`,
      `${vip} @${s.empty} goto reject_c`,
      `${vip} @l7front${family} ct mark set ct mark or ${L7LB}${log(SERVICE_LOG_PREFIX.frontend)} return`,
      ...ext,
      `${vip} @${s.front} ct mark set ct mark or ${SVC}${log(SERVICE_LOG_PREFIX.frontend)} return`,
      `${nf} @${n.drop} drop`,
      `${nf} @${n.empty} goto reject_c`,
      `${nf} @${n.front} ct mark set ct mark or ${hex(CT_SERVICE | CT_NODEPORT)}${log(SERVICE_LOG_PREFIX.nodePort)}`,
    ];
  };
  const dnat = (family: 4 | 6): string[] => {
    const ip = family === 4 ? "ip" : "ip6";
    const s = setsOf(family, false);
    const n = setsOf(family, true);
    return [
      `ct mark & ${SVC} == 0 return`,
      `${ip} daddr . meta l4proto . th dport vmap @${s.nat}`,
      `meta nfproto ipv${family} ${np} vmap @${n.nat}`,
    ];
  };
  const remote = (family: 4 | 6): string[] => {
    const mine = localCidrs.filter((c) => c.includes(":") === (family === 6));
    if (mine.length === 0) return [];
    const ip = family === 4 ? "ip" : "ip6";
    return [`meta nfproto ipv${family} ct mark & ${NODEPORT} == ${NODEPORT} ${ip} daddr != { ${mine.join(", ")} } masquerade`]; // prettier-ignore
  };
  return [
    { name: "reject_c", rules: ["meta l4proto tcp reject with tcp reset", "reject"] },
    { name: "classify", rules: classify(4) },
    { name: "classify6", rules: classify(6) },
    {
      name: "pre_c",
      base: "type filter hook prerouting priority -160; policy accept;",
      rules: [
        "ct state new meta nfproto ipv4 jump classify",
        "ct state new meta nfproto ipv6 jump classify6",
      ],
    },
    {
      name: "out_c",
      base: "type filter hook output priority -160; policy accept;",
      rules: [
        "ct state new meta nfproto ipv4 jump classify",
        "ct state new meta nfproto ipv6 jump classify6",
      ],
    },
    { name: "dnat_c", rules: dnat(4) },
    { name: "dnat6_c", rules: dnat(6) },
    {
      name: "nat_c",
      base: "type nat hook prerouting priority dstnat; policy accept;",
      rules: ["meta nfproto ipv4 jump dnat_c", "meta nfproto ipv6 jump dnat6_c"],
    },
    {
      name: "nat_out_c",
      base: "type nat hook output priority -100; policy accept;",
      rules: ["meta nfproto ipv4 jump dnat_c", "meta nfproto ipv6 jump dnat6_c"],
    },
    {
      // NodePort to another node's pod: the reply must come back through this node (its conntrack).
      name: "snat_c",
      base: "type nat hook postrouting priority srcnat; policy accept;",
      rules: [...remote(4), ...remote(6)],
    },
  ];
}

/**
 * The choice chain of a frontend: n<N> / a<N>t<T> (ClusterIP), pn<N> / pa<N>t<T> (NodePort), with
 * `mg` for N under Maglev; IPv6 ones carry a `v6` prefix.
 */
export function choiceChain(
  f: LbFrontend,
  family: 4 | 6,
  maglev: boolean,
): { name: string; rules: string[] } {
  const n = f.backends.length;
  const node = f.ip === undefined;
  const ip = family === 4 ? "ip" : "ip6";
  const key = node ? "meta l4proto . th dport" : `${ip} daddr . meta l4proto . th dport`;
  const dnat = `dnat ${ip} to ${key} . meta mark map @${setsOf(family, node).be}`;
  const pick = maglev
    ? `jhash ${ip} saddr . th sport . ${ip} daddr . th dport mod ${MAGLEV_M} seed ${MAGLEV_SEED}`
    : `numgen random mod ${n}`;
  const p = `${family === 6 ? "v6" : ""}${node ? "p" : ""}`;
  const count = maglev ? "mg" : String(n);
  const t = f.affinitySeconds;
  if (t === undefined) return { name: `${p}n${count}`, rules: [`meta mark set ${pick} ${dnat}`] };
  const client = `${ip} saddr . ${ip} daddr . meta l4proto . th dport`;
  const aff = `@aff${family}`;
  const remember = `update ${aff} { ${client} timeout ${t}s : meta mark }`;
  return {
    name: `${p}a${count}t${t}`,
    rules: [
      `meta mark set ${client} map ${aff} ${remember} ${dnat}`,
      `meta mark set ${pick} ${remember} ${dnat}`,
    ],
  };
}
