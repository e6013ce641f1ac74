/**
 * Many endpoints at once (an agent's cold start: records in the store, no
 * namespaces), in N/25 + 1 processes spawned from Node instead of about 3 per endpoint:
 *
 *   one `ip -force -batch -`        every missing namespace ("netns add" lines)
 *   rtnetlink, no process           one veth pair per endpoint (rtnl.ts)
 *   rtnetlink in the node           every host end: up, fe80::1, the route to the endpoint
 *                                   (node-links.ts: one request; in a named node, to the one
 *                                   process the agent keeps there)
 *   one `sh` per 25 endpoints       each endpoint's sysctls and `ip -batch` inside it
 *                                   (configureFreshEndpoints), `concurrency` scripts at a time
 *
 * Anything that fails on the fast path (a namespace that could not be
 * added, a veth name in the way, a refused batch) falls back to
 * reconcileEndpoint for the endpoints concerned, which repairs whatever is
 * half-built; an endpoint that still fails is reported, not fatal to the rest.
 */
import { MembraneError } from "../errors.js";
import { run, runRaw } from "./exec.js";
import { EMPTY_NETNS } from "./endpoint-state.js";
import { checkEndpoint, planEndpoint, reconcileEndpoint, type EndpointParams } from "./endpoint.js";
import { listNetns } from "./netns.js";
import { applyNodeOps } from "./node-links.js";
import { createVethIn, netnsPath } from "./rtnl.js";

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

/** The script line that configures a new endpoint namespace (sysctls, then its `ip -batch` lines). */
function freshScript(p: EndpointParams, lines: readonly string[], onFail = "exit 1"): string {
  const cmd = `nsenter --net=${netnsPath(p.netns)} sh -c '${FRESH_EP_SYSCTLS} && exec ip -batch -'`;
  return `${cmd} <<'MEMBRANE_EOF' || ${onFail}\n${lines.join("\n")}\nMEMBRANE_EOF\n`;
}

/**
 * A new endpoint namespace's sysctls and `ip -batch` for many new endpoints from one `sh -s` process
 * (nsenter enters the network namespace only; `ip netns exec` and `ip -n`
 * also copy the mount namespace and remount /sys, a cost that grows with
 * the number of mounts, one per namespace in /run/netns):
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

export interface BatchOptions {
  /** Endpoint processes at a time (default 2: this is CPU-bound process spawning). */
  concurrency?: number;
  /** Called after each endpoint is done (ok or failed), with the count so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface BatchResult {
  /** Endpoints created on the fast path. */
  created: number;
  /** Endpoints that went through reconcileEndpoint (something was in the way). */
  repaired: number;
  failed: { name: string; error: MembraneError | Error }[];
}

/** Endpoints per configuration script (step 4): progress is reported at this grain. */
const CHUNK = 25;

/** Runs `f` over `items`, `n` at a time. */
export async function eachLimit<T>(
  items: readonly T[],
  n: number,
  f: (t: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const t = items[next++] as T;
      await f(t);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(n, items.length)) }, worker));
}

/** Creates (or repairs) every endpoint of `eps`; all must share one node. */
export async function createEndpoints(
  eps: readonly EndpointParams[],
  opts: BatchOptions = {},
): Promise<BatchResult> {
  const result: BatchResult = { created: 0, repaired: 0, failed: [] };
  let done = 0;
  const finished = (): void => opts.onProgress?.(++done, eps.length);
  const slow: EndpointParams[] = [];
  const fast: EndpointParams[] = [];
  for (const p of eps) {
    try {
      checkEndpoint(p);
    } catch (e) {
      result.failed.push({ name: p.name, error: e as Error });
      finished();
      continue;
    }
    fast.push(p);
  }
  const node = fast[0]?.node;
  if (node === undefined) return result;

  // 1. Every missing namespace in one process; -force goes on past a line that fails.
  const before = new Set(await listNetns());
  const fresh = fast.filter((p) => !before.has(p.netns));
  slow.push(...fast.filter((p) => before.has(p.netns)));
  if (fresh.length > 0) {
    await run(["ip", "-force", "-batch", "-"], {
      stdin: fresh.map((p) => `netns add ${p.netns}\n`).join(""),
      what: `add ${fresh.length} endpoint namespaces`,
    }).catch(() => undefined); // which ones exist is read back below
  }
  const after = new Set(await listNetns());
  // 2. The veths over rtnetlink (a name in the way: the slow path repairs it).
  const wired: EndpointParams[] = [];
  for (const p of fresh) {
    if (!after.has(p.netns)) {
      slow.push(p);
      continue;
    }
    try {
      await createVethIn({ ifname: p.hostIfname, netns: node.netns }, { ifname: "eth0", netns: p.netns });
      wired.push(p);
    } catch {
      slow.push(p);
    }
  }
  // 3. Every host end in one batch; if it is refused, each endpoint is reconciled on its own.
  const plans = new Map(wired.map((p) => [p, planEndpoint(p, EMPTY_NETNS, EMPTY_NETNS)]));
  let hostOk = true;
  await applyNodeOps(
    node.netns,
    [...plans.values()].flatMap((pl) => pl.host.ops),
    `configure the host ends of ${wired.length} endpoints`,
    { bulk: true },
  ).catch(() => {
    hostOk = false;
  });
  if (!hostOk) slow.push(...wired.splice(0));
  // 4. Each endpoint's own side: scripts of CHUNK endpoints (one process each), `concurrency` at a time.
  const conc = opts.concurrency ?? 2;
  const chunks: EndpointParams[][] = [];
  for (let i = 0; i < wired.length; i += CHUNK) chunks.push(wired.slice(i, i + CHUNK));
  await eachLimit(chunks, conc, async (chunk) => {
    const failed = await configureFreshEndpoints(
      chunk.map((p) => ({ p, lines: plans.get(p)?.ep.lines ?? [] })),
    );
    for (const p of chunk) {
      if (failed.has(p.netns)) slow.push(p);
      else {
        result.created++;
        finished();
      }
    }
  });
  // 5. The rest, one reconcile each (it reads what is there and builds what is missing).
  await eachLimit(slow, conc, async (p) => {
    try {
      await reconcileEndpoint(p);
      result.repaired++;
    } catch (e) {
      result.failed.push({ name: p.name, error: e as Error });
    }
    finished();
  });
  return result;
}
