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
import { createVethIn, deleteLinkIn, inNetns } from "./rtnl.js";
import { deleteNetns, netnsExists, setSysctls } from "./netns.js";
import { addFreshNetns, type FreshNetns } from "./endpoint-fresh.js";
import { applyNodeOps, closeNodeLinks, warmNodeLinks } from "./node-links.js";
import { warmNetnsHelper } from "./netns-helper.js";
import { nativeNetns, warmNativeNetns } from "./netns-native.js";
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
  warmNodeLinks(p.netns); // the endpoints' node side goes through it (node-links.ts)
  // The endpoints' namespaces are made through one of them (endpoint-fresh.ts).
  if (nativeNetns()) warmNativeNetns();
  else warmNetnsHelper();
  return { ...p };
}

/** Deletes a named node namespace; a node in the current namespace is left alone. */
export async function deleteNode(node: NodeNetns): Promise<void> {
  if (node.netns === undefined) return;
  closeNodeLinks((ns) => ns === node.netns);
  await deleteNetns(node.netns);
}

/** Runs `ip -batch -` in `netns` (nsenter, see rtnl.ts inNetns) with `lines`; a refusal names the namespace and the line. */
export async function ipBatch(
  lines: readonly string[],
  netns: string | undefined,
  what: string,
): Promise<void> {
  if (lines.length === 0) return;
  await run([...inNetns(netns), "ip", "-batch", "-"], { stdin: lines.join("\n") + "\n", what });
}

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
 * half-built veth is re-created. Costs, in processes spawned from Node: a
 * new endpoint none (endpoint-fresh.ts: the long-lived helper shell adds
 * the namespace and sets its sysctls, and later runs `ip -batch` inside it,
 * netns-helper.ts), the veth over
 * rtnetlink (rtnl.ts) and the node side over rtnetlink (node-links.ts),
 * nothing read; a failure on the way deletes the new namespace (which takes
 * the veth along) and names the step. An existing one costs two reads (its
 * own namespace, and its host interface only in the node) and one `ip
 * -batch` in the endpoint when it differs (the node side over rtnetlink).
 */
export async function reconcileEndpoint(p: EndpointParams): Promise<EndpointReconcile> {
  return (await prepareEndpoint(p)).finish();
}

/** An endpoint between prepareEndpoint and its veth. */
export interface PreparedEndpoint {
  /** Creates the veth (when missing) and configures both sides. */
  finish(): Promise<EndpointReconcile>;
  /** Gives up: a namespace prepareEndpoint created is deleted. */
  abort(): Promise<void>;
}

/**
 * The first half of reconcileEndpoint: checks `p` and, for a new endpoint,
 * creates its namespace with its sysctls, with no veth yet, so nothing can
 * reach it. The agent runs this while the endpoint's policy goes into the
 * kernel and creates the veth (finish) only after: never open while its
 * policy is computed, and the namespace's cost hidden behind the policy's.
 * `pooled`: the namespace p.netns, made ahead of time (endpoint-pool.ts).
 */
export async function prepareEndpoint(p: EndpointParams, pooled?: FreshNetns): Promise<PreparedEndpoint> {
  try {
    checkEndpoint(p);
  } catch (e) {
    pooled?.abort(); // the caller deletes the namespace; its process must not keep it alive
    throw e;
  }
  warmNodeLinks(p.node.netns); // after a restart, it starts while the namespace is built
  if (pooled === undefined && (await netnsExists(p.netns))) {
    return { finish: () => reconcileExisting(p), abort: () => Promise.resolve() };
  }
  // A pooled namespace (endpoint-pool.ts) was made as addFreshNetns makes one, ahead of time.
  const ns = pooled ?? (await addFreshNetns(p.netns, `endpoint ${p.name}`));
  const abort = async (): Promise<void> => {
    ns.abort();
    await deleteNetns(p.netns).catch(() => undefined);
  };
  return {
    finish: async () => {
      try {
        return await finishFresh(p, ns);
      } catch (e) {
        await abort(); // the namespace takes the veth along: nothing half-built stays
        throw e;
      }
    },
    abort,
  };
}

/** `s` without link `ifname` and the routes through it. */
function dropLink(s: NetnsState, ifname: string): NetnsState {
  const links = new Map(s.links);
  links.delete(ifname);
  return { links, routes: new Set([...s.routes].filter((r) => !r.endsWith(` dev ${ifname}`))) };
}

async function delLink(ifname: string, ns: string | undefined, changes: string[]): Promise<void> {
  await ipBatch([`link del ${ifname}`], ns, `delete the half-built veth end ${ifname}`);
  changes.push(`delete ${ifname} in ${ns ?? "(own netns)"}`);
}

async function veth(p: EndpointParams, changes: string[]): Promise<void> {
  // The node's defaults (createNode: accept_dad=0, rp_filter=0) apply to the new host end.
  await createVethIn({ ifname: p.hostIfname, netns: p.node.netns }, { ifname: "eth0", netns: p.netns });
  changes.push(`create veth ${p.hostIfname} <-> eth0 (rtnetlink)`);
}

function planChanges(p: EndpointParams, host: readonly string[], ep: readonly string[]): string[] {
  const node = p.node.netns;
  return [
    ...host.map((l) => `ip ${node === undefined ? "" : `-n ${node} `}${l}`),
    ...ep.map((l) => `ip -n ${p.netns} ${l}`),
  ];
}

/** A new endpoint after prepareEndpoint: the veth, then the node side over rtnetlink and the endpoint side at once. */
async function finishFresh(p: EndpointParams, ns: FreshNetns): Promise<EndpointReconcile> {
  const node = p.node.netns;
  const changes = [`create netns ${p.netns}`];
  let nodeState = EMPTY_NETNS;
  try {
    await veth(p, changes);
  } catch (e) {
    if (!(e instanceof MembraneError) || !/EEXIST/.test(e.message)) throw e;
    // A new namespace has no eth0, so the node side is read only if its end is in the way.
    const s = await readNetnsState(node, p.hostIfname);
    if (!s.links.has(p.hostIfname)) throw e;
    await delLink(p.hostIfname, node, changes);
    nodeState = dropLink(s, p.hostIfname);
    await veth(p, changes);
  }
  const { host, ep } = planEndpoint(p, EMPTY_NETNS, nodeState);
  const [h, e] = await Promise.allSettled([
    applyNodeOps(node, host.ops, `configure ${p.hostIfname} for endpoint ${p.name}`),
    ns.configure(ep),
  ]);
  if (h.status === "rejected") throw h.reason;
  if (e.status === "rejected") throw e.reason;
  return { endpoint: { ...p }, changes: [...changes, ...planChanges(p, host.lines, ep.lines)] };
}

/** An endpoint whose namespace exists: read both sides, re-create a half-built veth, apply what differs. */
async function reconcileExisting(p: EndpointParams): Promise<EndpointReconcile> {
  const node = p.node.netns;
  const changes: string[] = [];
  let [epState, nodeState] = await Promise.all([readNetnsState(p.netns), readNetnsState(node, p.hostIfname)]);
  const hostOk = nodeState.links.has(p.hostIfname);
  const peerOk = epState.links.has("eth0");
  if (!hostOk || !peerOk) {
    if (hostOk) await delLink(p.hostIfname, node, changes);
    if (peerOk) await delLink("eth0", p.netns, changes);
    await veth(p, changes);
    epState = dropLink(epState, "eth0");
    nodeState = dropLink(nodeState, p.hostIfname);
  }
  const { host, ep } = planEndpoint(p, epState, nodeState);
  await applyNodeOps(node, host.ops, `configure ${p.hostIfname} for endpoint ${p.name}`);
  await ipBatch(ep.lines, p.netns, `configure eth0 of endpoint ${p.name}`);
  return { endpoint: { ...p }, changes: [...changes, ...planChanges(p, host.lines, ep.lines)] };
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

/** Creates (or adopts, or repairs) an endpoint: netns, veth pair, addresses, routes, sysctls. */
export async function createEndpoint(p: EndpointParams): Promise<EndpointNetns> {
  return (await reconcileEndpoint(p)).endpoint;
}

/**
 * Deletes an endpoint: stops the processes still inside it (SIGTERM, `graceMs`
 * to exit, then SIGKILL; default none; found without a process), deletes the
 * veth pair from the node side over rtnetlink (at once, so its host name is
 * free for the next endpoint: a namespace's devices go asynchronously after
 * it), then its netns (`ip netns del`: the one process). No-op when gone.
 * Returns how many processes it stopped: a process left behind would keep
 * the namespace, and the address it had, alive after the endpoint is gone.
 */
export async function deleteEndpoint(ep: EndpointNetns, opts: { graceMs?: number } = {}): Promise<number> {
  const stopped = await stopNetnsProcesses(ep.netns, opts.graceMs ?? 0);
  await deleteLinkIn(ep.node.netns, ep.hostIfname);
  await deleteNetns(ep.netns);
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
