/**
 * Node-to-node encryption (`--encryption-node-to-node`): the node's own traffic to a peer node's
 * address goes through the WireGuard interface, except WireGuard's own UDP to that same address
 * (the peer's endpoint: routing it into the tunnel would loop).
 *
 *   wg set <if> fwmark 0x02000000                 WireGuard's UDP socket carries the bit
 *   ip rule pref 2110 not fwmark 0x02000000/0x02000000 lookup 2110
 *   table 2110: <peer node address>/32 dev <if> src <this node's address> proto 211
 *
 * Every packet without the bit (the host's, forwarded pods') looks in table 2110 first and finds
 * the peers' node addresses there; WireGuard's own packets skip the table and leave through the
 * underlay by the main table. The bit is outside the identity bits the policy table writes into
 * the packet mark (abi/marks.ts), so forwarded pod packets never carry it. The peers put this
 * node's address in its allowed IPs (peers.ts), so host traffic is cryptokey-checked like pods'.
 */
import { WG_FWMARK } from "../abi/marks.js";
import { run, runRaw } from "../datapath/exec.js";
import { parseAddr } from "../labels/cidr.js";
import { PEER_ROUTE_PROTO } from "../datapath/peer-routes.js";

export const NODE_ROUTE_TABLE = 2110;
export const NODE_RULE_PREF = 2110;

const hex = (n: number): string => `0x${n.toString(16)}`;

export interface NodeRoutesConfig {
  readonly netns?: string;
  readonly ifname: string;
  /** This node's underlay address (the source of its traffic through the tunnel). */
  readonly selfIp: string;
}

const famFlag = (ip: string): "-4" | "-6" => (parseAddr(ip)?.family === 6 ? "-6" : "-4");

/** The rule and the fwmark (idempotent): after this, peers' addresses in the table go through the tunnel. */
export async function ensureNodeRouting(c: NodeRoutesConfig): Promise<void> {
  const where = c.netns ? { netns: c.netns } : {};
  const fam = famFlag(c.selfIp);
  await run(["wg", "set", c.ifname, "fwmark", hex(WG_FWMARK)], {
    ...where,
    code: "ENCRYPTION_FAILED",
    what: `mark ${c.ifname}'s own UDP (node-to-node encryption)`,
  });
  const rules = await runRaw(["ip", fam, "rule", "show", "pref", String(NODE_RULE_PREF)], where);
  if (rules.stdout.trim() === "")
    await run(
      [
        ...["ip", fam, "rule", "add", "pref", String(NODE_RULE_PREF), "not", "fwmark"],
        ...[`${hex(WG_FWMARK)}/${hex(WG_FWMARK)}`, "lookup", String(NODE_ROUTE_TABLE)],
      ],
      { ...where, code: "ENCRYPTION_FAILED", what: "add the node-to-node routing rule" },
    );
}

/** Makes table 2110 hold exactly `peerIps` (dev <if>); new routes before stale ones go. */
export async function reconcileNodeRoutes(c: NodeRoutesConfig, peerIps: readonly string[]): Promise<void> {
  const where = c.netns ? { netns: c.netns } : {};
  const fam = famFlag(c.selfIp);
  const shown = await runRaw(["ip", "-j", fam, "route", "show", "table", String(NODE_ROUTE_TABLE)], where);
  const have = new Set(
    shown.status === 0 && shown.stdout.trim() !== ""
      ? (JSON.parse(shown.stdout) as { dst?: string; dev?: string }[])
          .filter((r) => r.dev === c.ifname)
          .map((r) => r.dst ?? "")
      : [],
  );
  const want = peerIps.filter((ip) => famFlag(ip) === fam);
  for (const ip of want)
    if (!have.has(ip))
      await run(
        [
          ...["ip", fam, "route", "replace", ip, "dev", c.ifname, "src", c.selfIp],
          ...["proto", String(PEER_ROUTE_PROTO), "table", String(NODE_ROUTE_TABLE)],
        ],
        { ...where, code: "ENCRYPTION_FAILED", what: `route ${ip} through ${c.ifname}` },
      );
  for (const ip of have)
    if (!want.includes(ip))
      await runRaw(["ip", fam, "route", "del", ip, "table", String(NODE_ROUTE_TABLE)], where);
}

/** Removes the rule and the table (node-to-node off, uninstall); what is gone is not an error. */
export async function removeNodeRouting(netns: string | undefined): Promise<boolean> {
  const where = netns ? { netns } : {};
  let removed = false;
  for (const fam of ["-4", "-6"]) {
    while ((await runRaw(["ip", fam, "rule", "del", "pref", String(NODE_RULE_PREF)], where)).status === 0)
      removed = true;
    const flushed = await runRaw(["ip", fam, "route", "flush", "table", String(NODE_ROUTE_TABLE)], where);
    removed ||= flushed.status === 0 && flushed.stdout.trim() !== "";
  }
  return removed;
}
