/**
 * The encryption table in the node's namespace (`inet membrane_encrypt`, apart
 * from the policy table: the policy reconciler never flushes it).
 *
 *   strict mode: packets to the strict CIDRs (default: the cluster CIDR) that
 *     are not for this node's own pods and leave through any interface but the
 *     tunnel's (WireGuard's, or IPsec's ipsec0) are logged (a drop flow, reason UNENCRYPTED_TRAFFIC) and
 *     dropped, in postrouting: forwarded pod traffic and the node's own alike.
 *     (mTLS tunnel: no interface is exempt; the tunnel's own traffic goes to
 *     peers' node addresses, outside the strict CIDRs.)
 *   WireGuard, IPsec: TCP SYNs into the tunnel get their MSS clamped to the route's MTU
 *     (pods keep a 1500 MTU; the tunnel carries 1420).
 *   mTLS tunnel: new TCP connections from this node's pods to other nodes' pods
 *     are DNATed to the tunnel's redirect listener (nat prerouting, after the
 *     policy chains at -150 judged the pod's egress on the real destination).
 *
 * Applied before the tunnel exists and before the agent's first policy rule, in
 * one atomic transaction (the old table is replaced inside it: no moment without
 * the drop rule), so a restart or a peer change never opens a window. Stopping
 * the agent leaves it in place.
 */
import { nftApply } from "../datapath/exec.js";
import { parsePrefix, prefixString } from "../labels/cidr.js";
import { MembraneError } from "../errors.js";

export const ENCRYPT_TABLE = "membrane_encrypt";
/** The NFLOG prefix of a strict-mode drop (abi/log-prefix.ts reads it: host, egress, unencrypted). */
export const STRICT_DROP_PREFIX = "mbr:d:h0:out:enc";

export interface EncryptTableConfig {
  readonly netns?: string;
  /**
   * The tunnel interface (WireGuard's, or IPsec's TUN): the one way out for the strict CIDRs.
   * Absent: the mTLS tunnel, which has no interface (its traffic goes to peers' node addresses).
   */
  readonly tunnelIf?: string;
  /** The mTLS tunnel: pods' TCP to other nodes' pods is DNATed to the tunnel's redirect listener. */
  readonly tunnel?: {
    readonly redirect4: string;
    readonly port: number;
    readonly clusterCidrs: readonly string[];
  };
  /** Strict mode: the CIDRs traffic to must be encrypted; absent = strict mode off. */
  readonly strictCidrs?: readonly string[];
  /** This node's own pod CIDRs (never through the tunnel). */
  readonly localCidrs: readonly string[];
  /** The agent's NFLOG group (drop flows). */
  readonly logGroup: number;
  /**
   * Node-to-node encryption under strict mode: peers' node addresses, which the node's own traffic
   * must reach through the tunnel too; WireGuard's own UDP from `port` is what may go in clear.
   */
  readonly nodeIps?: readonly string[];
  readonly port?: number;
}

function split(cidrs: readonly string[], what: string): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of cidrs) {
    const p = parsePrefix(c);
    if (!p)
      throw new MembraneError(
        "ENCRYPTION_INVALID",
        `Cannot set up strict mode: ${what} ${JSON.stringify(c)} is not a CIDR`,
      );
    (p.family === 4 ? v4 : v6).push(prefixString(p));
  }
  return { v4, v6 };
}

const set = (name: string, type: string, elems: readonly string[]): string =>
  `  set ${name} { type ${type}; flags interval; ${elems.length > 0 ? `elements = { ${elems.join(", ")} }` : ""} }`;

/** The whole table as one nft script (replaces the old table atomically). */
export function encryptTableScript(c: EncryptTableConfig): string {
  const wg = c.tunnelIf !== undefined ? JSON.stringify(c.tunnelIf) : undefined;
  const lines = [
    `table inet ${ENCRYPT_TABLE} {}`,
    `delete table inet ${ENCRYPT_TABLE}`,
    `table inet ${ENCRYPT_TABLE} {`,
  ];
  if (wg !== undefined)
    lines.push(
      "  chain mss {",
      "    type filter hook forward priority mangle; policy accept;",
      `    oifname ${wg} tcp flags & (syn | rst) == syn tcp option maxseg size set rt mtu`,
      "  }",
    );
  const t = c.tunnel;
  if (t !== undefined) lines.push(...tunnelRedirect(t, c.localCidrs));
  if (c.strictCidrs !== undefined) {
    const strict = split(c.strictCidrs, "--encryption-strict-cidr");
    const local = split(c.localCidrs, "the pod CIDR");
    const log = `log group ${c.logGroup} prefix "${STRICT_DROP_PREFIX}"`;
    // The mTLS tunnel has no interface: its traffic leaves to peers' node addresses (outside the
    // strict CIDRs); whatever still heads for a remote pod's address is plaintext.
    const oif = wg !== undefined ? `oifname != ${wg} ` : "";
    lines.push(
      set("strict4", "ipv4_addr", strict.v4),
      set("local4", "ipv4_addr", local.v4),
      set("strict6", "ipv6_addr", strict.v6),
      set("local6", "ipv6_addr", local.v6),
      "  chain strict {",
      "    type filter hook postrouting priority filter; policy accept;",
      `    ${oif}ip daddr @strict4 ip daddr != @local4 counter ${log} drop`,
      `    ${oif}ip6 daddr @strict6 ip6 daddr != @local6 counter ${log} drop`,
    );
    if (c.nodeIps !== undefined && c.port !== undefined && wg !== undefined) {
      // Node-to-node: to a peer node, only WireGuard's own UDP (its endpoint) may go in clear.
      const nodes = split(c.nodeIps, "a peer's node address");
      lines.splice(
        lines.indexOf("  chain strict {"),
        0,
        set("nodes4", "ipv4_addr", nodes.v4),
        set("nodes6", "ipv6_addr", nodes.v6),
      );
      lines.push(
        `    oifname != ${wg} ip daddr @nodes4 udp sport ${c.port} accept`,
        `    oifname != ${wg} ip6 daddr @nodes6 udp sport ${c.port} accept`,
        `    oifname != ${wg} ip daddr @nodes4 counter ${log} drop`,
        `    oifname != ${wg} ip6 daddr @nodes6 counter ${log} drop`,
      );
    }
    lines.push("  }");
  }
  lines.push("}");
  return lines.join("\n") + "\n";
}

/**
 * The mTLS tunnel's redirect: a new TCP connection from a local pod to a pod of another node
 * (the cluster CIDR, not this node's) is DNATed to the tunnel's listener, after the policy
 * chains (priority -150) judged the pod's egress on the real destination. IPv4 (the slice).
 */
function tunnelRedirect(
  t: NonNullable<EncryptTableConfig["tunnel"]>,
  localCidrs: readonly string[],
): string[] {
  const cluster = split(t.clusterCidrs, "--cluster-cidr");
  const local = split(localCidrs, "the pod CIDR");
  if (cluster.v4.length === 0 || local.v4.length === 0) return [];
  return [
    set("tcluster4", "ipv4_addr", cluster.v4),
    set("tlocal4", "ipv4_addr", local.v4),
    "  chain tunnel_redirect {",
    "    type nat hook prerouting priority dstnat; policy accept;",
    `    meta l4proto tcp ip saddr @tlocal4 ip daddr @tcluster4 ip daddr != @tlocal4 dnat ip to ${t.redirect4}:${t.port}`,
    "  }",
  ];
}

export async function applyEncryptTable(c: EncryptTableConfig): Promise<void> {
  await nftApply(encryptTableScript(c), c.netns ? { netns: c.netns } : {});
}

/** Removes the table (uninstall). */
export async function deleteEncryptTable(netns: string | undefined): Promise<void> {
  await nftApply(
    `table inet ${ENCRYPT_TABLE} {}\ndelete table inet ${ENCRYPT_TABLE}\n`,
    netns ? { netns } : {},
  );
}
