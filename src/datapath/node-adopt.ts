/**
 * A restarted agent's node and endpoints, adopted without a process.
 *
 *   adoptNode(p)        named node: /run/netns/<node> exists and its `lo` is up (one rtnetlink
 *                       link dump; createNode brings lo up last) -> adopted, else createNode.
 *                       Own namespace: its sysctls read from /proc/sys (no process).
 *   intactEndpoints(ps) one readdir of /run/netns + one link dump of the node: an endpoint
 *                       whose namespace exists and whose host veth exists and is up is intact.
 *   verifyNode(p)       deeper, for the background: gateways, blackholes and lo read in one
 *                       `ip -j -batch`; createNode again when something is missing.
 *
 * Addresses and routes inside each endpoint's namespace are not read here:
 * the agent checks them in the background after its API is up
 * (reconcileEndpoint, which changes only what differs).
 */
import { readFile } from "node:fs/promises";
import { createNode, NODE_SYSCTLS, planEndpoint, type EndpointParams, type NodeParams } from "./endpoint.js";
import {
  EMPTY_NETNS,
  NODE_BASICS_QUERY,
  readNetnsState,
  readNetnsStates,
  type NetnsState,
} from "./endpoint-state.js";
import { listNetns } from "./netns.js";
import { linkStates } from "./rtnl.js";
import { warmNativeNetns } from "./netns-native.js";

export type { NodeNetns } from "./endpoint.js";

/** Adopts the node as it is when it was prepared before (verifyNode checks the rest later); prepares it otherwise. */
export async function adoptNode<P extends NodeParams>(p: P): Promise<Readonly<P>> {
  // No Node rtnetlink process here (node-links.ts). The native helper (a small C process that
  // changes nothing until asked) starts now, so the first create after a restart does not wait for it.
  if (!(await nodePrepared(p))) return await createNode(p);
  warmNativeNetns();
  return { ...p };
}

async function nodePrepared(p: NodeParams): Promise<boolean> {
  if (p.netns !== undefined) {
    if (!(await listNetns()).includes(p.netns)) return false;
    return (await linkStates(p.netns)).get("lo")?.up === true;
  }
  // The agent's own namespace: lo is up on any host, so the sysctls decide (read, no process).
  for (const [k, v] of Object.entries(NODE_SYSCTLS)) {
    const now = await readFile(`/proc/sys/${k.replace(/\./g, "/")}`, "utf8").catch(() => "");
    if (now.trim() !== v) return false;
  }
  return true;
}

/**
 * Splits endpoints into intact ones (namespace present, host veth present
 * and up) and the others, from one readdir and one link dump: no process.
 */
export async function intactEndpoints<E extends Pick<EndpointParams, "netns" | "hostIfname">>(
  nodeNetns: string | undefined,
  eps: readonly E[],
): Promise<{ intact: E[]; missing: E[] }> {
  const namespaces = new Set(await listNetns());
  const links = await linkStates(nodeNetns);
  const intact: E[] = [];
  const missing: E[] = [];
  for (const ep of eps) {
    const ok = namespaces.has(ep.netns) && links.get(ep.hostIfname)?.up === true;
    (ok ? intact : missing).push(ep);
  }
  return { intact, missing };
}

/**
 * Reads the node's lo, gateways and blackholes (one process, only those: not the
 * node's veths and routes) and prepares the node again when one is missing.
 * Returns what was missing (empty: as it was). `yieldNow` as in verifyEndpoints.
 */
export async function verifyNode(
  p: NodeParams,
  yieldNow: () => Promise<void> = () => Promise.resolve(),
): Promise<string[]> {
  await yieldNow();
  const s = await readNetnsState(p.netns, undefined, {
    query: NODE_BASICS_QUERY,
    background: true,
    beforeParse: yieldNow,
  });
  const lo = s.links.get("lo");
  const missing: string[] = [];
  if (lo?.up !== true) missing.push("lo up");
  if (p.gateway4 && lo?.addrs.has(`${p.gateway4}/32`) !== true) missing.push(`${p.gateway4}/32 on lo`);
  if (p.gateway6 && lo?.addrs.has(`${p.gateway6}/128`) !== true) missing.push(`${p.gateway6}/128 on lo`);
  for (const c of [p.podCidr4, p.podCidr6]) {
    if (c && !s.routes.has(`blackhole ${c}`)) missing.push(`blackhole ${c}`);
  }
  if (missing.length > 0) await createNode(p);
  return missing;
}

/** Endpoint namespaces read by one process (readNetnsStates). */
const READ_CHUNK = 50;
/** Endpoints compared between two yields (planEndpoint is a few tens of microseconds each). */
const PLAN_SLICE = 25;

/**
 * Reads the endpoints' namespaces (READ_CHUNK per process, readNetnsStates)
 * and the node's once, and calls `repair` for an endpoint whose addresses,
 * routes or links differ from what it wants. Stops between endpoints when
 * `signal` is aborted. Returns how many differed.
 *
 * `yieldNow` (background use: the agent after a restart) is awaited before each
 * process is started and every PLAN_SLICE endpoints compared: the agent passes
 * "one turn of the event loop, then until its work queue is idle" (bounded), so a
 * user's change that arrives meanwhile does not wait for the check, nor share the
 * CPU with its reads (a spawn forks the agent's heap).
 */
export async function verifyEndpoints(
  eps: readonly EndpointParams[],
  repair: (p: EndpointParams, what: readonly string[]) => Promise<void>,
  signal?: AbortSignal,
  yieldNow: () => Promise<void> = () => Promise.resolve(),
): Promise<number> {
  const node = eps[0]?.node;
  if (node === undefined) return 0;
  // An abort (the agent stops) ends a wait at once: stop() does not wait for the agent to be quiet.
  const stopped = new Promise<void>((r) =>
    signal?.aborted ? r() : signal?.addEventListener("abort", () => r(), { once: true }),
  );
  const yieldOrStop = (): Promise<void> => Promise.race([yieldNow(), stopped]);
  await yieldOrStop();
  if (signal?.aborted) return 0;
  const nodeState = await readNetnsState(node.netns, undefined, {
    background: true,
    beforeParse: yieldOrStop,
  });
  let differed = 0;
  let states = new Map<string, NetnsState>();
  for (const [i, p] of eps.entries()) {
    if (i % PLAN_SLICE === 0) await yieldOrStop();
    if (signal?.aborted) break;
    if (i % READ_CHUNK === 0) {
      await yieldOrStop(); // before each process: a change that arrived meanwhile goes first
      if (signal?.aborted) break;
      // Background work: its processes run at nice 19, behind the agent's changes for the CPU.
      states = await readNetnsStates(
        eps.slice(i, i + READ_CHUNK).map((e) => e.netns),
        { background: true, beforeParse: yieldOrStop }, // the parse too: a change goes first
      );
    }
    const epState = states.get(p.netns) ?? EMPTY_NETNS;
    const { host, ep } = planEndpoint(p, epState, nodeState);
    const what = [
      ...(epState.links.has("eth0") ? [] : ["eth0 missing"]),
      ...host.lines.map((l) => `node: ${l}`),
      ...ep.lines.map((l) => `endpoint: ${l}`),
    ];
    if (what.length === 0) continue;
    differed++;
    await repair(p, what);
  }
  return differed;
}
