/**
 * Propagation: an endpoint created on node A -> enforced on each other node B.
 *
 *   POST /v1/endpoints on A (labels app=cb-new) --t0
 *     packet: B's prober pod (egress allowed only to app=cb-new) sends a TCP SYN to the new pod
 *             every 10 ms (each attempt its own socket, 250 ms timeout); the first attempt that
 *             gets through (RST or answer) -> packetMs = its send time - t0
 *     kernel: `nft get element` of B's ipcache4_host every 20 ms from the create's answer on;
 *             the end of the first read that maps the address to the pod's identity -> kernelMs
 *             (an upper bound: one read costs ~1-2 s with 10,000 remote endpoints; kernelLoMs the lower)
 *   Both start when A answered (the address is known then): neither is below createMs.
 *
 * Two samples per create (A's two peers); A rotates over the nodes. The first
 * create of the label set (it allocates the identity) is a warm-up, reported apart.
 */
import { AgentClient } from "../src/agent/client.js";
import type { EndpointView } from "../src/agent/controllers/endpoint-record.js";
import type { Probe } from "../src/probe/probe.js";
import type { LabNode } from "./cluster-lab.js";
import { ipcacheOf } from "./cluster-kernel.js";

export interface Sample {
  readonly from: string;
  readonly to: string;
  readonly createMs: number;
  readonly packetMs: number | undefined;
  /** Upper bound: the end of the first read-back that showed it. */
  readonly kernelMs: number | undefined;
  /** Lower bound: the start of the last read-back that did not (undefined: the first one did). */
  readonly kernelLoMs: number | undefined;
  readonly kernelReadMs: number | undefined;
}

const CAP_MS = 15_000; // a safety net per sample, not a measurement

export async function createEndpoint(
  c: AgentClient,
  name: string,
  labels: Record<string, string>,
): Promise<EndpointView> {
  return (await c.request("POST", "/v1/endpoints", { name, namespace: "default", labels })) as EndpointView;
}

/** Sends a SYN every 10 ms from `probe` to ip:9 until one gets through; its send time (or undefined). */
async function firstThrough(probe: Probe, ip: string, deadline: number): Promise<number | undefined> {
  let got: number | undefined;
  const pending: Promise<void>[] = [];
  while (got === undefined && performance.now() < deadline) {
    const sent = performance.now();
    pending.push(
      probe.tcp(ip, 9, 250).then((r) => {
        if (r !== "timeout" && (got === undefined || sent < got)) got = sent;
      }),
    );
    await new Promise((r) => setTimeout(r, 10));
  }
  await Promise.all(pending);
  return got;
}

/**
 * When `node`'s kernel came to map ip to identity `id`, polled with `nft get element` every 20 ms:
 * after the start of the last read that did not show it (`lo`, undefined when the first read did)
 * and before the end of the first that did (`hi`); `readMs`: that read's own duration.
 */
async function kernelAt(
  node: LabNode,
  table: string,
  ip: string,
  id: number,
  deadline: number,
): Promise<{ lo: number | undefined; hi: number; readMs: number } | undefined> {
  let lo: number | undefined;
  while (performance.now() < deadline) {
    const start = performance.now();
    const m = await ipcacheOf(node.netns, table, [ip]);
    const end = performance.now();
    if (m?.get(ip) === id) return { lo, hi: end, readMs: end - start };
    lo = start;
    await new Promise((r) => setTimeout(r, 20));
  }
  return undefined;
}

/** One create on `a`, measured at every other node. */
export async function propagateOnce(
  nodes: readonly LabNode[],
  probes: ReadonlyMap<string, Probe>,
  table: string,
  a: LabNode,
  name: string,
): Promise<Sample[]> {
  const others = nodes.filter((n) => n !== a);
  const t0 = performance.now();
  const view = await createEndpoint(a.client, name, { app: "cb-new" });
  const createMs = performance.now() - t0;
  const deadline = t0 + CAP_MS;
  return Promise.all(
    others.map(async (b) => {
      const probe = probes.get(b.name) as Probe;
      const [sent, kernel] = await Promise.all([
        firstThrough(probe, view.ipv4, deadline),
        kernelAt(b, table, view.ipv4, view.identity, deadline),
      ]);
      return {
        from: a.name,
        to: b.name,
        createMs,
        packetMs: sent === undefined ? undefined : sent - t0,
        kernelMs: kernel === undefined ? undefined : kernel.hi - t0,
        kernelLoMs: kernel?.lo === undefined ? undefined : kernel.lo - t0,
        kernelReadMs: kernel?.readMs,
      };
    }),
  );
}
