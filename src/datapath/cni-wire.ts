/**
 * The wiring of a standalone CNI attachment (membrane-cni as the first
 * plugin): a veth from the node into the runtime's namespace, named as the
 * runtime asks, addressed and routed as our own endpoints are (endpoint.ts).
 *
 *   node netns                                   runtime's netns (CNI_NETNS, any path)
 *     lo: 10.200.0.1/32 (gw)                       <ifname>: 10.200.0.5/32, fd00:200::5/128
 *     <hostIfname>: fe80::1/64  <──── veth ────>   routes: 10.200.0.1 dev <ifname> scope link
 *     routes: 10.200.0.5 dev <hostIfname>                  default via 10.200.0.1
 *             fd00:200::5 dev <hostIfname>                 default via fe80::1 dev <ifname>
 *
 *   wireContainer: veth over rtnetlink (one request, peer created in the runtime's namespace),
 *                  node side over rtnetlink (node-links.ts), container side in one `ip -batch`
 *   unwireContainer: the host end deleted (takes the peer along); gone already is no error
 *
 * The namespace belongs to the runtime: nothing here creates or deletes one.
 * A failed wireContainer leaves nothing (the veth is deleted again).
 */
import { isIfname } from "../abi/ifname.js";
import { closeSync, constants, openSync, statSync } from "node:fs";
import { createRtNetlink } from "netlink";
import { MembraneError } from "../errors.js";
import type { LinkOp } from "./endpoint-state.js";
import { ip, runRaw } from "./exec.js";
import { applyNodeOps } from "./node-links.js";
import { netnsPath, vethLinkInfo } from "./rtnl.js";

const NLM_F_CREATE = 0x400;
const NLM_F_EXCL = 0x200;
/** Link-local address of every node-side veth (endpoint.ts HOST_LINK_LOCAL). */
const HOST_LINK_LOCAL = "fe80::1";

export interface CniWire {
  /** The node's named namespace; undefined = this process's own. */
  readonly nodeNetns: string | undefined;
  /** CNI_NETNS: the runtime's namespace file (/run/netns/x, /proc/<pid>/ns/net, ...). */
  readonly netnsPath: string;
  /** CNI_IFNAME: the container side's name. */
  readonly ifname: string;
  readonly hostIfname: string;
  readonly ipv4: string;
  readonly ipv6?: string;
  readonly gateway4?: string;
  readonly gateway6?: string;
}

/** The container side as the CNI result names it. */
export interface WiredContainer {
  readonly mac: string;
}

const refuse = (w: CniWire, why: string, cause?: unknown): MembraneError =>
  new MembraneError(
    "NETNS_FAILED",
    `Cannot wire ${w.hostIfname} (node) <-> ${w.ifname} (netns ${w.netnsPath.slice(0, 200)}): ${why}`,
    cause !== undefined ? { cause } : {},
  );

/** Opens a namespace file without following it into anything but a namespace (no FIFO can block us). */
function openNetns(w: CniWire, path: string): number {
  let ok = false;
  try {
    ok = path.startsWith("/") && !path.includes("\0") && statSync(path).isFile();
  } catch {
    ok = false;
  }
  if (!ok) throw refuse(w, `${JSON.stringify(path.slice(0, 200))} is not a network namespace file`);
  try {
    return openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    throw refuse(w, `the namespace cannot be opened: ${String(e)}`, e);
  }
}

async function createVeth(w: CniWire): Promise<void> {
  const fds: number[] = [];
  const rt = createRtNetlink();
  try {
    const hostFd = openNetns(w, netnsPath(w.nodeNetns));
    fds.push(hostFd);
    const peerFd = openNetns(w, w.netnsPath);
    fds.push(peerFd);
    await rt.newLink(
      {},
      { ifname: w.hostIfname, netNsFd: hostFd, linkinfo: vethLinkInfo(w.ifname, peerFd) },
      { flags: NLM_F_CREATE | NLM_F_EXCL, timeout: 10_000 },
    );
  } catch (e) {
    if (e instanceof MembraneError) throw e;
    throw refuse(
      w,
      `the kernel refused the veth: ${e instanceof Error ? e.message : String(e)} (EEXIST: ${w.ifname} exists in the namespace, or ${w.hostIfname} in the node)`,
      e,
    );
  } finally {
    for (const fd of fds) closeSync(fd);
    rt.socket.close();
  }
}

/** The node side: host end up with fe80::1, a route to each of the container's addresses. */
export function nodeOps(w: CniWire): LinkOp[] {
  return [
    { op: "up", ifname: w.hostIfname },
    { op: "addr", ifname: w.hostIfname, cidr: `${HOST_LINK_LOCAL}/64`, nodad: true },
    { op: "route", dst: w.ipv4, dev: w.hostIfname },
    ...(w.ipv6 !== undefined ? [{ op: "route" as const, dst: w.ipv6, dev: w.hostIfname }] : []),
  ];
}

/** The container side's `ip -batch` lines, then the `link show` whose JSON gives its MAC address. */
export function containerLines(w: CniWire): string[] {
  const d = w.ifname;
  const lines = [`link set dev ${d} up`, `addr add ${w.ipv4}/32 dev ${d}`];
  if (w.gateway4 !== undefined)
    lines.push(`route add ${w.gateway4} dev ${d} scope link`, `route add default via ${w.gateway4} dev ${d}`);
  if (w.ipv6 !== undefined) {
    lines.push(`addr add ${w.ipv6}/128 dev ${d} nodad`);
    if (w.gateway6 !== undefined) lines.push(`route add default via ${HOST_LINK_LOCAL} dev ${d}`);
  }
  lines.push(`link show dev ${d}`);
  return lines;
}

/** Wires the container; on any failure the veth is gone again and the error names the step. */
export async function wireContainer(w: CniWire): Promise<WiredContainer> {
  if (!isIfname(w.ifname) || !isIfname(w.hostIfname))
    throw refuse(w, "an interface name is not 1-15 of [A-Za-z0-9_.-]");
  await createVeth(w);
  try {
    await applyNodeOps(w.nodeNetns, nodeOps(w), `configure ${w.hostIfname}`);
    const r = await runRaw(["nsenter", `--net=${w.netnsPath}`, "ip", "-j", "-batch", "-"], {
      stdin: containerLines(w).join("\n") + "\n",
    });
    if (r.status !== 0) throw refuse(w, `configuring ${w.ifname} failed: ${r.stderr.trim().slice(0, 500)}`);
    const link = (JSON.parse(r.stdout.trim().split("\n").pop() ?? "[]") as { address?: string }[])[0];
    return { mac: link?.address ?? "" };
  } catch (e) {
    await unwireContainer(w.nodeNetns, w.hostIfname).catch(() => undefined);
    throw e;
  }
}

/** Deletes the host end (the kernel deletes the peer with it); absent already is success. */
export async function unwireContainer(nodeNetns: string | undefined, hostIfname: string): Promise<void> {
  if (!isIfname(hostIfname)) return;
  await ip(["link", "del", "dev", hostIfname], nodeNetns).catch(async (e: unknown) => {
    const still = await ip(["link", "show", "dev", hostIfname], nodeNetns).then(
      () => true,
      () => false,
    );
    if (still) throw e;
  });
}
