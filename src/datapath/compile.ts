/**
 * DatapathState -> one nftables table (`inet membrane` by default).
 *
 *   pre_c (hook prerouting, priority -150: after conntrack, before DNAT)     out_c (hook output, -150)
 *     established/related, iifname . saddr                                     ND/MLD accept
 *       vmap @egress_est4/6: accept (dispatch.ts)
 *     ND/MLD accept
 *     iifname vmap @egress_ep ──────────┐                                      proxy's group: accept
 *     ct established/related accept     │                                      mark = host
 *     mark = ipcache[saddr], then _host[saddr] if there                        oifname vmap @ingress_ep ─┐
 *     ip/ip6 daddr vmap @ingress_ep4/6 ─┼─┐                                                            │
 *                                       v v                                                            v
 *   e<id>_out / e<id>_in: the endpoint's own chains (compile-endpoint.ts), which go to its policy
 *     group's chains and verdict maps g<n>_<dir>, shared by the endpoints with the same policy
 *     (policy-groups.ts); a new
 *     connection's egress first jumps to mark_dst: mark = ipcache4/6[daddr], then
 *     ipcache4/6_host[daddr] if there, local daddr: mark = host
 *   An established packet of an endpoint, from its own address, meets one rule: the
 *   conntrack state, then one lookup of its interface and source address together, which
 *   is the dispatch and the anti-spoofing at once (8 expressions; before: ND check,
 *   dispatch lookup, jump, two source compares, ct state: 14 expressions in 5 rules).
 *   A plain `ct state established accept` first would open a hole: conntrack matches the
 *   5-tuple alone and the node's rp_filter is off (endpoint.ts), so an endpoint could
 *   forge packets into another's established flows (test/datapath/traffic.test.ts,
 *   "forged"); such a packet misses egress_est and meets its own chain's anti-spoofing.
 *   Other established packets (to endpoints from the node or other nodes) take the
 *   `ct state` accept after the dispatch: no ipcache lookup either.
 *   Measured (bench/traffic-table.ts: iperf3 between two endpoints, kernel 6.18, 2 vCPU
 *   under load 14-37): perf puts conntrack at ~2% of the two ends' samples and the old
 *   rules at ~3% more (nft_do_chain ~1.8%, the iifname hash lookup 0.6% at 250 endpoints,
 *   1.1% at 1,000); old/new table at 1,000 endpoints, CPU per GB, 8 paired rounds:
 *   1.01..1.08, median 1.057. nft's flowtable (a fast path for established flows) is not
 *   available here: CONFIG_NF_FLOW_TABLE is off, `add flowtable` fails (ENOENT).
 *   stamp: a digest of all the rest (stamp.ts), so a restart need not read the table back
 *
 *   nat_c (hook prerouting, priority dstnat) and nat_out_c (hook output, -100): a
 *     connection whose ct mark has a redirect bit is DNATed to the node's proxy (L7
 *     port, or the DNS port); the node's own connections carry CT_FROM_HOST, so the
 *     proxy names their client `host`.
 *   dns_id_c (hook input, priority 100): a datagram redirected to the DNS proxy gets its
 *     conntrack entry's id as packet mark (compile-nat.ts).
 *
 * Both ends of a connection are decided in prerouting, before DNAT: the
 * client's egress and the server's ingress, so a redirect happens only when
 * both allow the connection at L3/L4, and the proxy then applies the L7
 * rules of both. Packets to the node itself are decided there too (as the
 * client's egress to `host`). The proxy's own upstream connections (its
 * group, `meta skgid`) leave without a second check: it connects only to the
 * original destination of a connection decided here. Their connections carry
 * CT_PROXY_UPSTREAM, so that bypass.ts never resets them.
 *
 * The packet mark is the identity register: ipcache maps set it (whole mark,
 * values < 2^25), policy keys mask it with IDENTITY_MASK. The proxy bits live
 * in the connection's mark (ct mark), which the packet mark does not touch.
 *
 * Layout, measured (bench/layout.ts, `npm run bench -- layout`; nft 1.0.6, kernel 6.18,
 * 2 vCPU shared with other builds; medians of 3 interleaved rounds; 1,000 endpoints,
 * 34,032 policy elements, 11,388 chains; ipcache 50,000 /32 + 200 CIDRs; nft start-up
 * alone ~50-100 ms; CPU = user+sys of the nft process):
 *                        A: 4 maps/ep/dir  A2: non-empty only  B: shared maps  A2 + hash ipcache
 *   maps                      8,005            3,487               13            3,488
 *   full load                 69 s             16 s                42 s          20 s
 *   nft -j list table         53 s             16 s                16 s          8 s
 *   list one endpoint         1.2 s            0.23 s              3.8 s (all)   0.23 s
 *   add a policy element      1.07 s CPU       1.07 s CPU          2.05 s CPU    0.19 s CPU
 *   add/remove ipcache /32    1.4 s CPU        1.2 s CPU           1.2 s CPU     0.17 s CPU
 *   remove an endpoint        2.1 s            1.5 s               2.3 s         0.24 s
 *   CPU per new flow          5.2 us           4.7 us              7.8 us        5.2 us
 *   (no table 1.3 us, conntrack only 3.2 us; lookups matched on both ends)
 * Hence per-endpoint maps, only the non-empty ones (A2): an empty map still costs a
 * kernel object, a dump and a lookup rule. Shared maps (B) lose: a pipapo insert costs
 * kernel time in proportion to the whole map (1.2-1.6 s of system CPU for one element
 * at 17,000), reading one endpoint means dumping everyone's, and each new flow pays
 * ~2.5 us more. The ipcache is a hash map of exact addresses (/32, /128: endpoints of
 * every node, nodes) plus a small interval map of CIDR/FQDN prefixes flattened among
 * themselves: the mark is set from the prefix map, then from the host map, which
 * overrides. A flattened 50,000-interval map made every transaction that touched any
 * interval map cost ~1 s more CPU, and a new /32 in a gap rewrites 3 intervals.
 * What remains with A2 + hash is nft's fixed cost per transaction (~0.16-0.19 s CPU
 * at 11k chains: it reads the table's chain and map declarations first), so host
 * addresses, which change most, skip nft: nfnl/setelem.ts writes their element
 * deltas as one nf_tables batch (a few ms, whatever the table). Updates are deltas
 * of the parts that changed: incremental.ts.
 *
 * NFLOG prefixes (drops, allowed and redirected new connections, audit): abi/log-prefix.ts.
 * The host firewall (input/output hooks, traffic of the node itself): compile-host.ts.
 */
import { isIfname } from "../abi/ifname.js";
import { parseAddr } from "../labels/cidr.js";
import { flattenIpcache, type IdentityInterval } from "../ipcache/intervals.js";
import { dispatchMaps, ESTABLISHED_RULES } from "./dispatch.js";
import { frozenChain, type CompiledTable, type NftChain, type NftElement, type NftMap } from "./model.js";
import {
  hex,
  invalid,
  MARK_DST_CHAIN,
  type EndpointContext,
  type EndpointParts,
} from "./compile-endpoint.js";
import { compileGrouped } from "./group-table.js";
import { compileHost } from "./compile-host.js";
import { authGateChains } from "./compile-auth.js";
import type { GroupPart } from "./policy-groups.js";
import type { HostTableView } from "../ipcache/hosts.js";
import { add64, globalDigest, groupDigest, hostDigest, partDigest, STAMP_MAP, stampMap } from "./stamp.js";
import {
  CT_FROM_HOST,
  CT_PROXY_UPSTREAM,
  IDENTITY_MASK,
  WORLD_IDENTITY,
  type DatapathEndpoint,
  type DatapathState,
} from "./types.js";

export interface CompileOptions {
  /** false: leave the stamp map empty and compute no digest (parts of a table, incremental.ts). */
  stamp?: boolean;
  /** A compiled part to reuse for an endpoint, if one is still valid (incremental.ts; its groups are checked). */
  cached?: (ep: DatapathEndpoint, ctx: EndpointContext) => EndpointParts | undefined;
  /** Table name (family inet). Default "membrane". */
  table?: string;
  /** NFLOG group of drop logs. Default 1. */
  logGroup?: number;
}

import { lbPolicyChains, SKIP_RULE } from "./compile-lb-policy.js";
import { checkProxy, DNS_ID_BASE, dnsIdRules, NAT_BASE, NAT_OUT_BASE, natRules } from "./compile-nat.js";
import { tunnelRules } from "./compile-tunnel.js";

export {
  auditPrefix,
  logPrefix,
  parseLogPrefix,
  type Direction,
  type DropReason,
  type LogReason,
} from "../abi/log-prefix.js";

const ND_TYPES = "icmpv6 type { 130, 131, 132, 133, 134, 135, 136, 137, 143 } accept";

function ipcacheMap(name: string, kind: "ipv4" | "ipv6", items: IdentityInterval[]): NftMap {
  return {
    name,
    fields: [kind],
    valueType: "mark",
    interval: true,
    elements: items.map((i) => ({ key: [{ lo: i.lo, hi: i.hi }], value: String(i.identity) })),
  };
}

/** The checks of one endpoint on its own (`p` names it in errors, e.g. "endpoints[3]"). */
export function checkEndpoint(ep: DatapathEndpoint, p: string): void {
  if (!Number.isInteger(ep.id) || ep.id < 0 || ep.id > 0xffffff) throw invalid(`${p}.id`, `bad id ${ep.id}`);
  if (!isIfname(ep.hostIfname))
    throw invalid(`${p}.hostIfname`, `"${ep.hostIfname}" is not an interface name (1-15 of [A-Za-z0-9_.-])`);
  if (ep.ipv4 !== undefined && parseAddr(ep.ipv4)?.family !== 4)
    throw invalid(`${p}.ipv4`, `"${ep.ipv4}" is not an IPv4 address`);
  if (ep.ipv6 !== undefined && parseAddr(ep.ipv6)?.family !== 6)
    throw invalid(`${p}.ipv6`, `"${ep.ipv6}" is not an IPv6 address`);
}

/** Ids and interfaces used twice (an endpoint checked before, and unchanged, needs no other check). */
export class EndpointUniqueness {
  private readonly ids = new Set<number>();
  private readonly ifs = new Set<string>();
  add(ep: DatapathEndpoint, p: string): void {
    if (this.ids.has(ep.id)) throw invalid(`${p}.id`, `endpoint id ${ep.id} is used twice`);
    if (this.ifs.has(ep.hostIfname))
      throw invalid(`${p}.hostIfname`, `interface ${ep.hostIfname} is used twice`);
    this.ids.add(ep.id);
    this.ifs.add(ep.hostIfname);
  }
}

function checkEndpoints(eps: readonly DatapathEndpoint[]): void {
  const unique = new EndpointUniqueness();
  eps.forEach((ep, i) => {
    checkEndpoint(ep, `endpoints[${i}]`);
    unique.add(ep, `endpoints[${i}]`);
  });
}

export function checkIpcache(ipcache: DatapathState["ipcache"]): void {
  ipcache.forEach((e, i) => {
    if (!Number.isInteger(e.identity) || e.identity < 0 || e.identity > IDENTITY_MASK)
      throw invalid(`ipcache[${i}].identity`, `identity ${e.identity} is not in 0..${IDENTITY_MASK}`);
  });
}

/** Compiles the desired state into the table the kernel should hold. Pure. */
export function compile(state: DatapathState, opts: CompileOptions = {}): CompiledTable {
  return compileAll(state, opts).table;
}

/** The whole table, and each endpoint's part of it (for incremental.ts). */
export function compileAll(
  state: DatapathState,
  opts: CompileOptions = {},
): {
  table: CompiledTable;
  parts: Map<number, EndpointParts>;
  /** The policy groups the parts go to, by name (policy-groups.ts). */
  groups: Map<string, GroupPart>;
  digest?: TableDigest;
} {
  const group = opts.logGroup ?? 1;
  const ruleText = new Map(state.rules.map((r) => [r.id, r.text]));
  checkEndpoints(state.endpoints);
  const eps = [...state.endpoints].sort((a, b) => a.id - b.id);

  checkIpcache(state.ipcache);
  const { v4, v6 } = flattenIpcache(state.ipcache, WORLD_IDENTITY);
  const maps: NftMap[] = [
    ipcacheMap("ipcache4", "ipv4", v4),
    ipcacheMap("ipcache6", "ipv6", v6),
    ...hostMaps(state.hosts),
  ];
  const chains: NftChain[] = [];
  const proxy = state.proxy;
  if (proxy) checkProxy(proxy);

  const ctx: EndpointContext = {
    group,
    ruleText: (id) => ruleText.get(id),
    ...(proxy ? { proxy } : {}),
  };
  const { parts, groups } = compileGrouped(eps, ctx, opts.cached && ((ep) => opts.cached?.(ep, ctx)));
  for (const g of groups.values()) {
    maps.push(...g.maps);
    chains.push(...g.chains);
  }
  for (const part of parts.values()) {
    chains.push(...part.chains);
  }
  maps.push(
    // Elements written by the Reconciler (stamp.ts): a digest of everything else.
    stampMap(undefined),
    ...dispatchMaps(parts.values()),
  );
  const host = state.hostIdentity;
  // Only while a Service exists (compile-lb-policy.ts): otherwise no packet pays for it.
  const skip = state.services === true ? [SKIP_RULE] : [];
  chains.push(
    {
      name: "pre_c",
      base: "type filter hook prerouting priority -150; policy accept;",
      rules: [
        // An endpoint's established packets from its own address: accepted at once (dispatch.ts).
        ...ESTABLISHED_RULES,
        ND_TYPES,
        ...skip, // a connection to a service is judged after its DNAT (compile-lb-policy.ts)
        // An endpoint's other packets: its egress chain (anti-spoofing, then its own established accept).
        "iifname vmap @egress_ep",
        // Established packets need no identity and no other lookup (the ingress chains would accept
        // them); only after the dispatch above, whose egress chain checks the source address.
        "ct state established,related accept",
        "meta mark set ip saddr map @ipcache4",
        "meta mark set ip6 saddr map @ipcache6",
        "meta mark set ip saddr map @ipcache4_host",
        "meta mark set ip6 saddr map @ipcache6_host",
        "ip daddr vmap @ingress_ep4",
        "ip6 daddr vmap @ingress_ep6",
      ],
    },
    {
      // Jumped to by egress chains for new connections: the destination's identity (exact
      // addresses override prefixes; the node's own addresses are host).
      name: MARK_DST_CHAIN,
      rules: [
        "meta mark set ip daddr map @ipcache4",
        "meta mark set ip6 daddr map @ipcache6",
        "meta mark set ip daddr map @ipcache4_host",
        "meta mark set ip6 daddr map @ipcache6_host",
        `fib daddr type local meta mark set ${host}`,
      ],
    },
    {
      // Before the output NAT (-100), so that a redirect decided here is DNATed there.
      name: "out_c",
      base: "type filter hook output priority -150; policy accept;",
      rules: [
        ND_TYPES,
        ...(proxy
          ? [
              `meta skgid ${proxy.gid} ct state new ct mark set ct mark or ${hex(CT_PROXY_UPSTREAM)}`,
              `meta skgid ${proxy.gid} accept`,
              `ct state new ct mark set ct mark or ${hex(CT_FROM_HOST)}`,
            ]
          : []),
        ...tunnelRules(state.tunnelGid),
        ...skip,
        `meta mark set ${host}`,
        "oifname vmap @ingress_ep",
      ],
    },
    ...(state.services === true ? lbPolicyChains(host, proxy) : []),
  );
  // The host firewall (nodeSelector host policies): nothing unless one selects this node.
  const hostFw = compileHost(state.host, ctx);
  maps.push(...hostFw.maps);
  chains.push(...hostFw.chains);
  if (state.auth === true) chains.push(...authGateChains(group)); // mutual authentication's gate

  if (proxy) {
    chains.push({ name: "nat_c", base: NAT_BASE, rules: natRules(proxy) });
    // The node's own connections to an endpoint whose ingress has L7 rules go through the proxy too.
    chains.push({
      name: "nat_out_c",
      base: NAT_OUT_BASE,
      rules: [`meta skgid ${proxy.gid} return`, ...natRules(proxy)],
    });
    // Redirected DNS datagrams carry their conntrack id to the proxy (compile-nat.ts).
    chains.push({ name: "dns_id_c", base: DNS_ID_BASE, rules: dnsIdRules(proxy) });
  }
  for (const c of chains) frozenChain(c);
  const table: CompiledTable = { family: "inet", name: opts.table ?? "membrane", maps, chains };
  if (opts.stamp === false) return { table, parts, groups };
  const digest = fullDigest(state, parts, groups, opts);
  const stamp = maps.find((m) => m.name === STAMP_MAP);
  if (stamp) stamp.elements = stampMap(digest.total).elements;
  return { table, parts, groups, digest };
}

/** stamp.ts: the digest of a whole table, and its terms (updated by incremental.ts). */
export interface TableDigest {
  total: bigint;
  global: bigint;
  parts: Map<number, bigint>;
  /** By group name. */
  groups: Map<string, bigint>;
  hosts: bigint;
}

export function withoutHosts(state: DatapathState): DatapathState {
  const { hosts: _hosts, ...rest } = state;
  return rest;
}

/** The global part: the table without endpoints and without host addresses. */
export function globalPart(state: DatapathState, opts: CompileOptions): CompiledTable {
  return compileAll({ ...withoutHosts(state), endpoints: [] }, { ...opts, stamp: false }).table;
}

function fullDigest(
  state: DatapathState,
  parts: ReadonlyMap<number, EndpointParts>,
  groups: ReadonlyMap<string, GroupPart>,
  opts: CompileOptions,
): TableDigest {
  const global = globalDigest(globalPart(state, opts));
  const partDigests = new Map<number, bigint>();
  let total = global;
  for (const [id, part] of parts) {
    const d = partDigest(id, part);
    partDigests.set(id, d);
    total = add64(total, d);
  }
  const groupDigests = new Map<string, bigint>();
  for (const [name, g] of groups) {
    const d = groupDigest(g);
    groupDigests.set(name, d);
    total = add64(total, d);
  }
  let hosts = 0n;
  for (const [ip, id] of state.hosts?.entries() ?? []) hosts = add64(hosts, hostDigest(ip, id));
  return { total: add64(total, hosts), global, parts: partDigests, groups: groupDigests, hosts };
}

/** Host-map element of one exact address; the one check for every path that writes host maps. */
export function hostElement(ip: string, identity: number): { family: 4 | 6; element: NftElement } {
  if (!Number.isInteger(identity) || identity < 0 || identity > IDENTITY_MASK)
    throw invalid(`hosts[${ip}]`, `identity ${identity} is not in 0..${IDENTITY_MASK}`);
  const a = parseAddr(ip);
  if (!a) throw invalid(`hosts[${ip}]`, "not an IP address");
  return { family: a.family, element: { key: [{ lo: a.value, hi: a.value }], value: String(identity) } };
}

export const HOST_MAPS = { 4: "ipcache4_host", 6: "ipcache6_host" } as const;

/** The exact addresses (hash maps: adding or deleting one costs one element, whatever the size). */
export function hostMaps(hosts: HostTableView | undefined, elements = true): NftMap[] {
  const v4: NftElement[] = [];
  const v6: NftElement[] = [];
  if (hosts && elements) {
    for (const [ip, identity] of hosts.entries()) {
      const h = hostElement(ip, identity);
      (h.family === 4 ? v4 : v6).push(h.element);
    }
  }
  return [
    { name: HOST_MAPS[4], fields: ["ipv4"], valueType: "mark", interval: false, elements: v4 },
    { name: HOST_MAPS[6], fields: ["ipv6"], valueType: "mark", interval: false, elements: v6 },
  ];
}
