/**
 * The steps of endpoint creation that rtnetlink can do from the agent's own
 * namespace, without a process.
 *
 *   createVethIn({ifname, netns: node}, {ifname: "eth0", netns: ep})
 *     RTM_NEWLINK(CREATE|EXCL) ifname, IFLA_NET_NS_FD=<node fd>,
 *       IFLA_LINKINFO{KIND "veth", DATA{VETH_INFO_PEER: ifinfomsg, IFNAME "eth0", IFLA_NET_NS_FD=<ep fd>}}
 *
 * Both ends are born in their namespaces (the fds are the /run/netns bind
 * mounts), so no `ip link set netns` step follows. What cannot be done from
 * here, verified on this kernel (6.18): a netlink socket speaks for the
 * namespace it was opened in, Node has no setns(2) and the `netlink` package
 * offers none; RTM_NEWADDR/RTM_NEWROUTE have no target-namespace attribute;
 * creating the veth with IFF_UP set fails with ENOTCONN. Addresses, routes and
 * "up" inside another namespace therefore need a process there: the node's
 * side goes through one kept process in the node (node-links.ts,
 * rtnl-child.ts), the endpoint's through an `ip -batch` the helper shell
 * runs inside it (endpoint-fresh.ts, netns-helper.ts).
 *
 *   linkStates(netns)   one RTM_GETLINK dump of a namespace (adoption at restart):
 *     own namespace: a plain dump; a named one: IFLA_TARGET_NETNSID, with the
 *     namespace's id in the agent's namespace (RTM_GETNSID, RTM_NEWNSID when
 *     it has none: bookkeeping that goes away with the namespace).
 */
import { closeSync, openSync } from "node:fs";
import { createRtNetlink } from "netlink";
import { MembraneError } from "../errors.js";

const IFLA_IFNAME = 3;
const IFLA_NET_NS_FD = 28;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const VETH_INFO_PEER = 1;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const IFINFOMSG_LEN = 16;
const RTM_NEWNSID = 88;
const RTM_GETNSID = 90;
const NETNSA_NSID = 1;
const NETNSA_FD = 3;
const NLMSG_ERROR = 2;

function attr(type: number, payload: Buffer): Buffer {
  const len = 4 + payload.length;
  const b = Buffer.alloc((len + 3) & ~3);
  b.writeUInt16LE(len, 0);
  b.writeUInt16LE(type, 2);
  payload.copy(b, 4);
  return b;
}
const cstr = (s: string): Buffer => Buffer.from(s + "\0", "utf8");
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/**
 * A network namespace name that is safe as a file under /run/netns and as a word in the
 * shell scripts the helpers run (netns-helper.ts, endpoint-state.ts): 1-200 of
 * [A-Za-z0-9_.-], not starting with "-" (an option to `ip`) or "." ("." and ".." are
 * directories).
 */
export const isNetnsName = (s: string): boolean => /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$/.test(s);

/** The namespace file of a named namespace, or of this process's own when absent. */
export function netnsPath(netns: string | undefined): string {
  return netns === undefined ? "/proc/self/ns/net" : `/run/netns/${netns}`;
}

/**
 * The argv prefix that runs a command in a named namespace: `nsenter --net=`
 * enters the network namespace only (`ip netns exec` and `ip -n` also copy
 * the mount namespace and remount /sys, which costs more with every
 * namespace's bind mount in /run/netns). Empty for the agent's own.
 */
export function inNetns(netns: string | undefined): string[] {
  return netns === undefined ? [] : ["nsenter", `--net=${netnsPath(netns)}`];
}

export interface VethEnd {
  readonly ifname: string;
  /** Named namespace; absent = the agent's own. */
  readonly netns: string | undefined;
}

/** IFLA_LINKINFO of a veth whose peer is created in the namespace behind `peerFd`. */
export function vethLinkInfo(peerIfname: string, peerFd: number): Buffer {
  const peer = Buffer.concat([
    Buffer.alloc(IFINFOMSG_LEN),
    attr(IFLA_IFNAME, cstr(peerIfname)),
    attr(IFLA_NET_NS_FD, u32(peerFd)),
  ]);
  return Buffer.concat([
    attr(IFLA_INFO_KIND, cstr("veth")),
    attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer)),
  ]);
}

/**
 * Creates a veth pair with each end directly in its namespace, in one
 * rtnetlink request. A refusal becomes a MembraneError naming the step,
 * both interfaces and the kernel's errno.
 */
export async function createVethIn(host: VethEnd, peer: VethEnd): Promise<void> {
  const fds: number[] = [];
  const rt = createRtNetlink();
  try {
    const open = (e: VethEnd): number => {
      try {
        const fd = openSync(netnsPath(e.netns), "r");
        fds.push(fd);
        return fd;
      } catch (err) {
        throw refused(host, peer, `namespace ${e.netns ?? "(own)"} cannot be opened: ${String(err)}`, err);
      }
    };
    const hostFd = open(host);
    const peerFd = open(peer);
    try {
      await rt.newLink(
        {},
        { ifname: host.ifname, netNsFd: hostFd, linkinfo: vethLinkInfo(peer.ifname, peerFd) },
        { flags: NLM_F_CREATE | NLM_F_EXCL, timeout: 10_000 },
      );
    } catch (err) {
      throw refused(
        host,
        peer,
        `the kernel refused: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    }
  } finally {
    for (const fd of fds) closeSync(fd);
    rt.socket.close();
  }
}

function refused(host: VethEnd, peer: VethEnd, why: string, cause: unknown): MembraneError {
  return new MembraneError(
    "NETNS_FAILED",
    `Cannot create veth ${host.ifname} (netns ${host.netns ?? "(own)"}) <-> ${peer.ifname} (netns ${peer.netns ?? "(own)"}) over rtnetlink: ${why}`,
    { hint: "EEXIST: an interface of that name exists already; ENOENT: a namespace is missing.", cause },
  );
}

const s32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
};

/** NETNSA_NSID of an RTM_NEWNSID answer (-1: none assigned). */
function parseNsid(msgs: readonly { type: number; data: Buffer }[]): number | undefined {
  for (const m of msgs) {
    if (m.type === NLMSG_ERROR) continue;
    for (let o = 4; o + 8 <= m.data.length;) {
      const len = m.data.readUInt16LE(o);
      if (len < 4) break;
      if (m.data.readUInt16LE(o + 2) === NETNSA_NSID) return m.data.readInt32LE(o + 4);
      o += (len + 3) & ~3;
    }
  }
  return undefined;
}

type Rt = ReturnType<typeof createRtNetlink>;

/** The id of the namespace behind `fd` in the agent's namespace, assigned when it has none. */
async function nsidOf(rt: Rt, fd: number, netns: string): Promise<number> {
  const rtgen = Buffer.alloc(4); // struct rtgenmsg, padded
  const get = async (): Promise<number | undefined> =>
    parseNsid((await rt.socket.request(RTM_GETNSID, [rtgen, attr(NETNSA_FD, u32(fd))]))[0]);
  let id = await get();
  if (id === undefined || id < 0) {
    await rt.socket.request(RTM_NEWNSID, [rtgen, attr(NETNSA_FD, u32(fd)), attr(NETNSA_NSID, s32(-1))], {
      flags: NLM_F_CREATE,
    });
    id = await get();
  }
  if (id === undefined || id < 0) {
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot read the links of netns ${netns}: the kernel gave it no id`,
    );
  }
  return id;
}

export interface LinkBrief {
  readonly up: boolean;
}

/**
 * The links of a namespace (absent = the agent's own) by name, from one
 * rtnetlink dump: no process. A missing namespace is an error naming it.
 */
export async function linkStates(netns: string | undefined): Promise<Map<string, LinkBrief>> {
  const rt = createRtNetlink();
  let fd: number | undefined;
  try {
    let target = {};
    if (netns !== undefined) {
      try {
        fd = openSync(netnsPath(netns), "r");
      } catch (err) {
        throw new MembraneError("NETNS_FAILED", `Cannot read the links of netns ${netns}: ${String(err)}`, {
          cause: err,
        });
      }
      target = { targetNetnsid: await nsidOf(rt, fd, netns) };
    }
    const out = new Map<string, LinkBrief>();
    for (const l of await rt.getLinks({}, target, { timeout: 10_000 })) {
      if (l.attrs.ifname !== undefined) out.set(l.attrs.ifname, { up: l.data.flags?.up === true });
    }
    return out;
  } catch (err) {
    if (err instanceof MembraneError) throw err;
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot read the links of netns ${netns ?? "(own)"} over rtnetlink: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  } finally {
    if (fd !== undefined) closeSync(fd);
    rt.socket.close();
  }
}

/**
 * Deletes link `ifname` of a namespace (absent = the agent's own) with one
 * RTM_DELLINK (IFLA_TARGET_NETNSID for a named one): no process. A veth
 * takes its peer along. Returns false when there was no such link (or no
 * such namespace): gone is the goal.
 */
export async function deleteLinkIn(netns: string | undefined, ifname: string): Promise<boolean> {
  const rt = createRtNetlink();
  let fd: number | undefined;
  try {
    let target = {};
    if (netns !== undefined) {
      try {
        fd = openSync(netnsPath(netns), "r");
      } catch {
        return false; // the namespace is gone, and its links with it
      }
      target = { targetNetnsid: await nsidOf(rt, fd, netns) };
    }
    await rt.delLink({}, { ifname, ...target }, { timeout: 10_000 });
    return true;
  } catch (err) {
    if (err instanceof MembraneError) throw err;
    if (/ENODEV|No such device/i.test(err instanceof Error ? err.message : String(err))) return false;
    throw new MembraneError(
      "NETNS_FAILED",
      `Cannot delete link ${ifname} in netns ${netns ?? "(own)"} over rtnetlink: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  } finally {
    if (fd !== undefined) closeSync(fd);
    rt.socket.close();
  }
}
