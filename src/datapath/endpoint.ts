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
import { isIPv4, isIPv6 } from "node:net";
import { MembraneError } from "../errors.js";
import { ip, run, runRaw, type RunResult } from "./exec.js";
import { EMPTY_NETNS, NetnsPlan, readNetnsState, type NetnsState } from "./endpoint-state.js";
import { createVethIn, inNetns, netnsPath } from "./rtnl.js";
import { deleteNetns, netnsExists, setSysctls } from "./netns.js";
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

/** The node's sysctls (createNode) and their values. */
export const NODE_SYSCTLS: Readonly<Record<string, string>> = {
  "net.ipv4.ip_forward": "1",
  "net.ipv6.conf.all.forwarding": "1",
  "net.ipv4.conf.all.rp_filter": "0",
  "net.ipv4.conf.default.rp_filter": "0",
  "net.ipv6.conf.all.accept_dad": "0",
  "net.ipv6.conf.default.accept_dad": "0",
};

/**
 * Prepares the node namespace (typed after `p`, so a named node keeps a
 * string `netns`): sysctls, then gateways and blackholes in one `ip -batch`
 * whose last line brings `lo` up, so that a named node whose `lo` is up was
 * prepared to the end (adoptNode relies on it).
 */
export async function createNode<P extends NodeParams>(p: P): Promise<Readonly<P>> {
  for (const [field, value] of [
    ["gateway4", p.gateway4],
    ["gateway6", p.gateway6],
    ["podCidr4", p.podCidr4],
    ["podCidr6", p.podCidr6],
  ] as const) {
    // They go into `ip -batch` lines: an address or a prefix, nothing else.
    if (value !== undefined && !/^[0-9A-Fa-f:.]+(\/[0-9]{1,3})?$/.test(value)) {
      throw new MembraneError(
        "NETNS_FAILED",
        `Cannot prepare the node: ${field} ${JSON.stringify(value)} is not an address`,
        {
          location: { path: field },
        },
      );
    }
  }
  if (p.netns !== undefined && !(await netnsExists(p.netns))) await ip(["netns", "add", p.netns]);
  await setSysctls(p.netns, NODE_SYSCTLS);
  const lines: string[] = [];
  if (p.gateway4) lines.push(`addr replace ${p.gateway4}/32 dev lo`);
  if (p.gateway6) lines.push(`addr replace ${p.gateway6}/128 dev lo nodad`);
  if (p.podCidr4) lines.push(`route replace blackhole ${p.podCidr4}`);
  if (p.podCidr6) lines.push(`route replace blackhole ${p.podCidr6}`);
  lines.push("link set lo up");
  await ipBatch(lines, p.netns, "prepare the node's namespace");
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

/** Runs `ip -batch -` in `netns` (nsenter, see configureFreshEndpoint) with `lines`; a refusal names the namespace and the line. */
export async function ipBatch(
  lines: readonly string[],
  netns: string | undefined,
  what: string,
): Promise<void> {
  if (lines.length === 0) return;
  await run([...inNetns(netns), "ip", "-batch", "-"], { stdin: lines.join("\n") + "\n", what });
}

/** Sysctls of a new endpoint namespace (constants: nothing from input reaches this shell line). */
const FRESH_EP_SYSCTLS = [
  "net/ipv6/conf/all/accept_dad",
  "net/ipv6/conf/default/accept_dad",
  "net/ipv6/conf/eth0/accept_dad",
  "net/ipv4/conf/all/rp_filter",
  "net/ipv4/conf/default/rp_filter",
  "net/ipv4/conf/eth0/rp_filter",
]
  .map((k) => `echo 0 > /proc/sys/${k}`)
  .join(" && ");

/** Refuses names and addresses that cannot go into an `ip -batch` line (ENDPOINT_INVALID, naming the field). */
export function checkEndpoint(p: EndpointParams): void {
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
  // These go into `ip -batch` lines: only plain addresses, so no input can add a line.
  for (const [field, value, ok] of [
    ["ipv4", p.ipv4, isIPv4],
    ["ipv6", p.ipv6, isIPv6],
    ["node.gateway4", p.node.gateway4, isIPv4],
    ["node.gateway6", p.node.gateway6, isIPv6],
  ] as const) {
    if (value !== undefined && value !== "" && !ok(value)) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot create endpoint ${p.name}: ${field} ${JSON.stringify(value)} is not an ${field.endsWith("4") ? "IPv4" : "IPv6"} address`,
        { location: { path: field } },
      );
    }
  }
  if (!/^[A-Za-z0-9_.-]{1,200}$/.test(p.netns)) {
    throw new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot create endpoint ${p.name}: netns ${JSON.stringify(p.netns)} is not 1-200 of [A-Za-z0-9_.-]`,
      { location: { path: "netns" } },
    );
  }
}

/** What reconcileEndpoint did: empty `changes` = the endpoint was adopted as it was. */
export interface EndpointReconcile {
  readonly endpoint: EndpointNetns;
  /** Kernel operations applied, in order ("create netns x", "ip -n x link set eth0 up", ...). */
  readonly changes: readonly string[];
}

/**
 * Brings an endpoint to what `p` wants, changing only what differs: an
 * endpoint whose namespace, veth, addresses and routes already exist (a
 * restarted agent) is adopted with zero kernel operations; a missing or
 * half-built veth is re-created. Costs, in processes spawned: a new
 * endpoint two (`ip netns add`; one `sh -s` that runs the node side's and
 * the endpoint side's `ip -batch`, with the sysctls), the veth over
 * rtnetlink (rtnl.ts, no process), nothing read; an existing one two reads
 * (its own namespace, and its host interface only in the node) and one
 * `ip -batch` per namespace that differs.
 */
export async function reconcileEndpoint(p: EndpointParams): Promise<EndpointReconcile> {
  checkEndpoint(p);
  const node = p.node.netns;
  const changes: string[] = [];
  const fresh = !(await netnsExists(p.netns));
  let epState = EMPTY_NETNS;
  let nodeState = EMPTY_NETNS;
  const drop = (s: NetnsState, ifname: string): NetnsState => {
    const links = new Map(s.links);
    links.delete(ifname);
    return { links, routes: new Set([...s.routes].filter((r) => !r.endsWith(` dev ${ifname}`))) };
  };
  const del = async (ifname: string, ns: string | undefined): Promise<void> => {
    await ipBatch([`link del ${ifname}`], ns, `delete the half-built veth end ${ifname}`);
    changes.push(`delete ${ifname} in ${ns ?? "(own netns)"}`);
  };
  const veth = async (): Promise<void> => {
    // The node's defaults (createNode: accept_dad=0, rp_filter=0) apply to the new host end.
    await createVethIn({ ifname: p.hostIfname, netns: node }, { ifname: "eth0", netns: p.netns });
    changes.push(`create veth ${p.hostIfname} <-> eth0 (rtnetlink)`);
  };
  if (fresh) {
    await ip(["netns", "add", p.netns]); // the one step with no rtnetlink equivalent (a bind mount)
    changes.push(`create netns ${p.netns}`);
    // A new namespace has no eth0, so the node side is read only if its end is in the way.
    try {
      await veth();
    } catch (e) {
      if (!(e instanceof MembraneError) || !/EEXIST/.test(e.message)) throw e;
      nodeState = await readNetnsState(node, p.hostIfname);
      if (!nodeState.links.has(p.hostIfname)) throw e;
      await del(p.hostIfname, node);
      nodeState = drop(nodeState, p.hostIfname);
      await veth();
    }
  } else {
    [epState, nodeState] = await Promise.all([readNetnsState(p.netns), readNetnsState(node, p.hostIfname)]);
    const hostOk = nodeState.links.has(p.hostIfname);
    const peerOk = epState.links.has("eth0");
    if (!hostOk || !peerOk) {
      if (hostOk) await del(p.hostIfname, node);
      if (peerOk) await del("eth0", p.netns);
      await veth();
      epState = drop(epState, "eth0");
      nodeState = drop(nodeState, p.hostIfname);
    }
  }
  const { host, ep } = planEndpoint(p, epState, nodeState);
  if (fresh) await configureFreshEndpoint(p, ep.lines, host.lines);
  else {
    await ipBatch(host.lines, node, `configure ${p.hostIfname} for endpoint ${p.name}`);
    await ipBatch(ep.lines, p.netns, `configure eth0 of endpoint ${p.name}`);
  }
  for (const l of host.lines) changes.push(`ip ${node === undefined ? "" : `-n ${node} `}${l}`);
  for (const l of ep.lines) changes.push(`ip -n ${p.netns} ${l}`);
  return { endpoint: { ...p }, changes };
}

/** The `ip -batch` lines that bring the node side and the endpoint side of `p` from these states to what it wants. */
export function planEndpoint(
  p: EndpointParams,
  epState: NetnsState,
  nodeState: NetnsState,
): { host: NetnsPlan; ep: NetnsPlan } {
  const ep = new NetnsPlan(epState);
  const host = new NetnsPlan(nodeState);
  ep.up("lo");
  host.up(p.hostIfname);
  host.addr(p.hostIfname, `${HOST_LINK_LOCAL}/64`, true);
  ep.up("eth0");
  const g4 = p.node.gateway4;
  if (p.ipv4) {
    ep.addr("eth0", `${p.ipv4}/32`, false);
    host.route(p.ipv4, p.hostIfname);
    if (g4) {
      ep.route(g4, "eth0", { scopeLink: true });
      ep.route("default", "eth0", { gateway: g4 });
    }
  }
  if (p.ipv6) {
    ep.addr("eth0", `${p.ipv6}/128`, true);
    host.route(p.ipv6, p.hostIfname);
    if (p.node.gateway6) ep.route("default", "eth0", { gateway: HOST_LINK_LOCAL });
  }
  return { host, ep };
}

/**
 * A new endpoint namespace's sysctls and its `ip -batch` in one process tree:
 * `nsenter --net=/run/netns/X sh -c '<sysctls> && exec ip -batch -'`, after
 * the host end's `ip -batch` in the node when `hostLines` are given.
 * nsenter enters the network namespace only; `ip netns exec` and `ip -n`
 * also copy the mount namespace and remount /sys, a cost that grows with
 * the number of mounts (one per namespace in /run/netns).
 */
export async function configureFreshEndpoint(
  p: EndpointParams,
  lines: readonly string[],
  hostLines: readonly string[] = [],
): Promise<void> {
  // With host lines, both sides from one `sh -s` (one spawn from Node instead of two).
  const host =
    hostLines.length === 0
      ? ""
      : `${[...inNetns(p.node.netns), "ip", "-batch", "-"].join(" ")} <<'MEMBRANE_EOF' || exit 1\n${hostLines.join("\n")}\nMEMBRANE_EOF\n`;
  await run(["sh", "-s"], {
    stdin: `${host}${freshScript(p, lines)}`,
    what: `configure ${p.hostIfname} and eth0 of endpoint ${p.name} (netns ${p.netns})`,
  });
}

/** The script line that configures a new endpoint namespace (sysctls, then its `ip -batch` lines). */
function freshScript(p: EndpointParams, lines: readonly string[], onFail = "exit 1"): string {
  const cmd = `nsenter --net=${netnsPath(p.netns)} sh -c '${FRESH_EP_SYSCTLS} && exec ip -batch -'`;
  return `${cmd} <<'MEMBRANE_EOF' || ${onFail}\n${lines.join("\n")}\nMEMBRANE_EOF\n`;
}

/**
 * configureFreshEndpoint for many new endpoints from one `sh -s` process:
 * one line of script per endpoint (its `ip -batch` lines in a here-document),
 * which forks `nsenter` where a spawn from Node would cost twice as much
 * (measured on the 2-core box: 34 against 72 ms per endpoint). Every name
 * and line was checked by checkEndpoint, so no input adds script. Returns
 * the namespaces whose configuration failed.
 */
export async function configureFreshEndpoints(
  eps: readonly { p: EndpointParams; lines: readonly string[] }[],
): Promise<Set<string>> {
  const script = eps
    .map(({ p, lines }) => freshScript(p, lines, `echo "membrane-failed ${p.netns}"`))
    .join("");
  const r = await runRaw(["sh", "-s"], { stdin: script, timeoutMs: 30_000 + 1_000 * eps.length });
  const failed = new Set<string>();
  for (const m of r.stdout.matchAll(/^membrane-failed (\S+)$/gm)) if (m[1] !== undefined) failed.add(m[1]);
  if (r.status !== 0 && failed.size === 0) for (const { p } of eps) failed.add(p.netns);
  return failed;
}

/** Creates (or adopts, or repairs) an endpoint: netns, veth pair, addresses, routes, sysctls. */
export async function createEndpoint(p: EndpointParams): Promise<EndpointNetns> {
  return (await reconcileEndpoint(p)).endpoint;
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
