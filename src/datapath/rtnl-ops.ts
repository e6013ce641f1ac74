/**
 * Applies a NetnsPlan's ops (endpoint-state.ts) over rtnetlink in the
 * namespace of the calling process: no `ip` process.
 *
 *   {op: "up", ifname}                 RTM_NEWLINK  ifi_flags=IFF_UP, change=IFF_UP, IFLA_IFNAME
 *   {op: "addr", ifname, cidr, nodad}  RTM_NEWADDR  CREATE|REPLACE, IFA_LOCAL+IFA_ADDRESS (IFA_F_NODAD)
 *   {op: "route", dst, dev, gateway?}  RTM_NEWROUTE CREATE|REPLACE, main table, proto boot,
 *                                      RTA_DST, RTA_OIF, RTA_GATEWAY
 *
 * The same messages `ip link set up`, `ip addr replace` and `ip route
 * replace` send (scope link for an IPv4 route without a gateway, as ip
 * chooses). Used by the agent in its own namespace and by rtnl-child.ts in a
 * node namespace. A refusal throws an Error naming the op and the errno.
 */
import { isIPv4, isIPv6 } from "node:net";
import { createRtNetlink } from "netlink";
import type { LinkOp } from "./endpoint-state.js";

const NLM_F_REPLACE = 0x100;
const NLM_F_CREATE = 0x400;
const AF_INET = 2;
const AF_INET6 = 10;
const RT_TABLE_MAIN = 254;
const RTPROT_BOOT = 3;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_LINK = 253;
const RTN_UNICAST = 1;
const TIMEOUT_MS = 10_000;

/** The op as the `ip` command that does the same, for messages. */
export function describeOp(o: LinkOp): string {
  switch (o.op) {
    case "up":
      return `link set ${o.ifname} up`;
    case "addr":
      return `addr replace ${o.cidr} dev ${o.ifname}${o.nodad ? " nodad" : ""}`;
    case "route":
      return `route replace ${o.dst}${o.gateway === undefined ? "" : ` via ${o.gateway}`} dev ${o.dev}`;
  }
}

/** The bytes of an IPv4 or IPv6 address (network order), as inet_pton gives them. */
export function addrBytes(a: string): Buffer {
  if (isIPv4(a)) return Buffer.from(a.split(".").map(Number));
  if (!isIPv6(a)) throw new Error(`${JSON.stringify(a)} is not an address`);
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (dotted?.[1] !== undefined && dotted[2] !== undefined) {
    // An IPv4 tail (::ffff:10.0.0.1) is the last two groups.
    const v4 = addrBytes(dotted[2]);
    a = `${dotted[1]}${v4.readUInt16BE(0).toString(16)}:${v4.readUInt16BE(2).toString(16)}`;
  }
  const [head = "", tail] = a.split("::");
  const groups = (s: string): string[] => (s === "" ? [] : s.split(":"));
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t];
  const b = Buffer.alloc(16);
  all.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), i * 2));
  return b;
}

function prefix(cidr: string): { addr: Buffer; len: number; family: number } {
  const [a = "", l] = cidr.split("/");
  const addr = addrBytes(a);
  const max = addr.length * 8;
  const len = l === undefined ? max : Number(l);
  if (!Number.isInteger(len) || len < 0 || len > max)
    throw new Error(`${JSON.stringify(cidr)}: bad prefix length`);
  return { addr, len, family: addr.length === 4 ? AF_INET : AF_INET6 };
}

/** Applies `ops` in order in this process's namespace; stops at the first refusal. */
export async function applyLinkOps(ops: readonly LinkOp[]): Promise<void> {
  if (ops.length === 0) return;
  const rt = createRtNetlink();
  const index = new Map<string, number>();
  const ifindex = async (ifname: string): Promise<number> => {
    let i = index.get(ifname);
    if (i === undefined) {
      const [l] = await rt.getLink({}, { ifname }, { timeout: TIMEOUT_MS });
      i = l?.data.index;
      if (i === undefined) throw new Error(`no link ${ifname}`);
      index.set(ifname, i);
    }
    return i;
  };
  const opts = { flags: NLM_F_CREATE | NLM_F_REPLACE, timeout: TIMEOUT_MS };
  try {
    for (const o of ops) {
      try {
        if (o.op === "up") {
          await rt.setLink(
            { flags: { up: true }, change: { up: true } },
            { ifname: o.ifname },
            {
              timeout: TIMEOUT_MS,
            },
          );
        } else if (o.op === "addr") {
          const p = prefix(o.cidr);
          await rt.newAddress(
            {
              family: p.family,
              prefixlen: p.len,
              scope: RT_SCOPE_UNIVERSE,
              index: await ifindex(o.ifname),
              ...(o.nodad ? { flags: { nodad: true } } : {}),
            },
            { local: p.addr, address: p.addr, ...(o.nodad ? { flags: { nodad: true } } : {}) },
            opts,
          );
        } else {
          const dst = o.dst === "default" ? undefined : prefix(o.dst);
          const gw = o.gateway === undefined ? undefined : addrBytes(o.gateway);
          const family = dst?.family ?? (gw?.length === 4 ? AF_INET : AF_INET6);
          const link = family === AF_INET && gw === undefined;
          await rt.newRoute(
            {
              family,
              dstLen: dst?.len ?? 0,
              table: RT_TABLE_MAIN,
              protocol: RTPROT_BOOT,
              scope: o.scopeLink === true || link ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE,
              type: RTN_UNICAST,
            },
            {
              ...(dst !== undefined ? { dst: dst.addr } : {}),
              ...(gw !== undefined ? { gateway: gw } : {}),
              oif: await ifindex(o.dev),
            },
            opts,
          );
        }
      } catch (e) {
        throw new Error(`${describeOp(o)}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      }
    }
  } finally {
    rt.socket.close();
  }
}
