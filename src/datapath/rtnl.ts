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
 * "up" inside another namespace therefore stay with one batched `ip` process
 * per namespace (endpoint.ts).
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

/** The namespace file of a named namespace, or of this process's own when absent. */
export function netnsPath(netns: string | undefined): string {
  return netns === undefined ? "/proc/self/ns/net" : `/run/netns/${netns}`;
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
