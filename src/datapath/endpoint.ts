/**
 * Endpoints as network namespaces wired to a node namespace by a veth pair.
 *
 *   node netns                                   endpoint netns
 *     lo: 10.200.0.1/32, fd00:200::1/128 (gw)      eth0: 10.200.0.5/32, fd00:200::5/128
 *     <hostIfname>: fe80::1/64  <──── veth ────>   routes: 10.200.0.1 dev eth0 scope link
 *     routes: 10.200.0.5/32 dev <hostIfname>               default via 10.200.0.1
 *             fd00:200::5/128 dev <hostIfname>             default via fe80::1 dev eth0
 *     blackhole 10.200.0.0/24, fd00:200::/64 (unknown pod addresses go nowhere)
 *
 * Every create is idempotent: calling it for an endpoint that exists
 * reconciles it (replace addresses and routes, re-create a half-built veth).
 * The node's reverse-path filter is off because nftables does source
 * validation per endpoint and logs it (compile.ts `spoof`); rp_filter would
 * drop those packets silently before the forward hook.
 */
import { MembraneError } from "../errors.js";
import { ip, runRaw, type RunResult } from "./exec.js";
import { createNetns, deleteNetns, netnsExists, setSysctls } from "./netns.js";
import { stopNetnsProcesses } from "./workload.js";

export interface NodeParams {
  /**
   * The node's named network namespace, created when missing; absent = the
   * namespace this process runs in (an agent enforcing on its own host).
   */
  netns?: string;
  /** Node address the endpoints route through, e.g. 10.200.0.1. */
  gateway4?: string;
  gateway6?: string;
  /** Pod CIDRs, blackholed in the node so unknown pod addresses are not routed elsewhere. */
  podCidr4?: string;
  podCidr6?: string;
}
export type NodeNetns = Readonly<NodeParams>;
/** A node in a named namespace (tests and benchmarks build these). */
export type NamedNodeNetns = NodeNetns & { readonly netns: string };

export interface EndpointParams {
  node: NodeNetns;
  name: string;
  netns: string;
  /** Node-side veth name (<= 15 characters). */
  hostIfname: string;
  ipv4?: string;
  ipv6?: string;
}
export type EndpointNetns = Readonly<EndpointParams>;

/** Link-local address of every node-side veth: the endpoints' IPv6 next hop. */
export const HOST_LINK_LOCAL = "fe80::1";

/** Prepares the node namespace (typed after `p`, so a named node keeps a string `netns`). */
export async function createNode<P extends NodeParams>(p: P): Promise<Readonly<P>> {
  if (p.netns !== undefined) await createNetns(p.netns);
  else await ip(["link", "set", "lo", "up"]);
  await setSysctls(p.netns, {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
  });
  if (p.gateway4) await ip(["addr", "replace", `${p.gateway4}/32`, "dev", "lo"], p.netns);
  if (p.gateway6) await ip(["-6", "addr", "replace", `${p.gateway6}/128`, "dev", "lo", "nodad"], p.netns);
  if (p.podCidr4) await ip(["route", "replace", "blackhole", p.podCidr4], p.netns);
  if (p.podCidr6) await ip(["-6", "route", "replace", "blackhole", p.podCidr6], p.netns);
  return { ...p };
}

/** Deletes a named node namespace; a node in the current namespace is left alone. */
export async function deleteNode(node: NodeNetns): Promise<void> {
  if (node.netns !== undefined) await deleteNetns(node.netns);
}

/** Does link `name` exist in `netns` (absent = the current namespace)? */
async function linkExists(name: string, netns: string | undefined): Promise<boolean> {
  const ns = netns === undefined ? [] : ["-n", netns];
  return (await runRaw(["ip", ...ns, "link", "show", "dev", name])).status === 0;
}

/** Creates (or reconciles) an endpoint: netns, veth pair, addresses, routes, sysctls. */
export async function createEndpoint(p: EndpointParams): Promise<EndpointNetns> {
  if (!/^[A-Za-z0-9_-]{1,15}$/.test(p.hostIfname)) {
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot create endpoint ${p.name}: hostIfname "${p.hostIfname}" is not 1-15 of [A-Za-z0-9_-]`,
      {
        location: { path: "hostIfname" },
        hint: "Pick a shorter interface name, e.g. <prefix>h<id>.",
      },
    );
  }
  const node = p.node.netns;
  await createNetns(p.netns);
  await setSysctls(p.netns, {
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
  });
  const hostOk = await linkExists(p.hostIfname, node);
  const peerOk = await linkExists("eth0", p.netns);
  if (!hostOk || !peerOk) {
    if (hostOk) await ip(["link", "del", p.hostIfname], node);
    if (peerOk) await ip(["link", "del", "eth0"], p.netns);
    await ip(["link", "add", p.hostIfname, "type", "veth", "peer", "name", "eth0", "netns", p.netns], node);
  }
  await setSysctls(node, {
    [`net.ipv6.conf.${p.hostIfname}.accept_dad`]: "0",
    [`net.ipv4.conf.${p.hostIfname}.rp_filter`]: "0",
  });
  await ip(["link", "set", p.hostIfname, "up"], node);
  await ip(["-6", "addr", "replace", `${HOST_LINK_LOCAL}/64`, "dev", p.hostIfname, "nodad"], node);
  await ip(["link", "set", "eth0", "up"], p.netns);
  const g4 = p.node.gateway4;
  const g6 = p.node.gateway6;
  if (p.ipv4) {
    await ip(["addr", "replace", `${p.ipv4}/32`, "dev", "eth0"], p.netns);
    await ip(["route", "replace", `${p.ipv4}/32`, "dev", p.hostIfname], node);
    if (g4) {
      await ip(["route", "replace", g4, "dev", "eth0", "scope", "link"], p.netns);
      await ip(["route", "replace", "default", "via", g4, "dev", "eth0"], p.netns);
    }
  }
  if (p.ipv6) {
    await ip(["-6", "addr", "replace", `${p.ipv6}/128`, "dev", "eth0", "nodad"], p.netns);
    await ip(["-6", "route", "replace", `${p.ipv6}/128`, "dev", p.hostIfname], node);
    if (g6) await ip(["-6", "route", "replace", "default", "via", HOST_LINK_LOCAL, "dev", "eth0"], p.netns);
  }
  return { ...p };
}

/**
 * Deletes an endpoint: stops the processes still inside it (SIGTERM, `graceMs`
 * to exit, then SIGKILL; default none), then its netns (which takes the veth
 * pair along). No-op when gone. Returns how many processes it stopped: a
 * process left behind would keep the namespace, and the address it had,
 * alive after the endpoint is gone.
 */
export async function deleteEndpoint(ep: EndpointNetns, opts: { graceMs?: number } = {}): Promise<number> {
  const stopped = await stopNetnsProcesses(ep.netns, opts.graceMs ?? 0);
  await deleteNetns(ep.netns);
  const node = ep.node.netns;
  if ((node === undefined || (await netnsExists(node))) && (await linkExists(ep.hostIfname, node))) {
    // Deleting the namespace takes the veth pair with it, asynchronously: the
    // host side may vanish between the check and the delete. Gone is the goal.
    await ip(["link", "del", ep.hostIfname], ep.node.netns).catch(async (e: unknown) => {
      if (await linkExists(ep.hostIfname, ep.node.netns)) throw e;
    });
  }
  return stopped;
}

/** Runs argv inside the endpoint's namespace; never throws on a non-zero exit. */
export function exec(
  ep: EndpointNetns,
  argv: readonly string[],
  opts: { stdin?: string | Buffer; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runRaw(argv, { ...opts, netns: ep.netns });
}
