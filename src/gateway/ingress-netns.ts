/**
 * The namespace the gateway process runs in: `<prefix>-gateway`, joined to
 * the node by a veth like an endpoint's, holding the gateway address. The
 * agent maps that address to the reserved `ingress` identity (8) in the
 * ipcache, so every connection the gateway makes to a backend is judged by
 * the backend's ingress policy as coming from `ingress`, as in Cilium.
 *
 *   node: <hostIf> (no address), route <address>/32 dev <hostIf>     gateway netns: eth0 <address>/32
 *                                                                     10.200.0.1 dev eth0 scope link
 *                                                                     default via 10.200.0.1
 * Dual stack (address6), as an endpoint's IPv6:
 *   node: <hostIf> fe80::1/64, route <address6>/128 dev <hostIf>     gateway netns: eth0 <address6>/128 (no DAD)
 *                                                                     default via fe80::1 dev eth0
 * Idempotent: an existing namespace and veth are reused (routes replaced).
 */
import { HOST_LINK_LOCAL } from "../datapath/endpoint.js";
import { ip, runRaw } from "../datapath/exec.js";

export interface IngressNetnsParams {
  readonly netns: string;
  /** The node's namespace (undefined: the agent's own). */
  readonly nodeNetns?: string;
  /** Node side of the veth (<= 15 characters). */
  readonly hostIf: string;
  readonly address: string;
  /** The IPv6 gateway address (dual stack). */
  readonly address6?: string;
  /** The node's pod gateway address (on its lo), the gateway namespace's next hop. */
  readonly nodeGateway: string;
}

export async function ensureIngressNetns(p: IngressNetnsParams): Promise<void> {
  const exists = await runRaw(["ip", "netns", "exec", p.netns, "true"]);
  if (exists.status !== 0) await ip(["netns", "add", p.netns]);
  const link = await runRaw(["ip", ...(p.nodeNetns ? ["-n", p.nodeNetns] : []), "link", "show", p.hostIf]);
  if (link.status !== 0)
    await ip(
      ["link", "add", p.hostIf, "type", "veth", "peer", "name", "eth0", "netns", p.netns],
      p.nodeNetns,
    );
  await ip(["link", "set", p.hostIf, "up"], p.nodeNetns);
  await ip(["route", "replace", `${p.address}/32`, "dev", p.hostIf], p.nodeNetns);
  await ip(["link", "set", "lo", "up"], p.netns);
  await ip(["addr", "replace", `${p.address}/32`, "dev", "eth0"], p.netns);
  await ip(["link", "set", "eth0", "up"], p.netns);
  await ip(["route", "replace", p.nodeGateway, "dev", "eth0", "scope", "link"], p.netns);
  await ip(["route", "replace", "default", "via", p.nodeGateway, "dev", "eth0"], p.netns);
  if (p.address6 === undefined) return;
  await ip(["-6", "addr", "replace", `${HOST_LINK_LOCAL}/64`, "dev", p.hostIf, "nodad"], p.nodeNetns);
  await ip(["-6", "route", "replace", `${p.address6}/128`, "dev", p.hostIf], p.nodeNetns);
  await ip(["-6", "addr", "replace", `${p.address6}/128`, "dev", "eth0", "nodad"], p.netns);
  await ip(["-6", "route", "replace", "default", "via", HOST_LINK_LOCAL, "dev", "eth0"], p.netns);
}

/**
 * Gateways' own addresses (agent/gateway-addresses.ts) on the gateway namespace's eth0, each
 * routed to it from the node (/32, /128 without DAD), so the process can listen on them and
 * outside clients reach them through the node; `remove`d ones (Gateways gone) taken away.
 */
export async function setGatewayAddresses(
  p: Pick<IngressNetnsParams, "netns" | "nodeNetns" | "hostIf">,
  add: readonly string[],
  remove: readonly string[],
): Promise<void> {
  const plen = (a: string): string => (a.includes(":") ? "128" : "32");
  for (const a of add) {
    const v6 = a.includes(":") ? ["nodad"] : [];
    await ip(["addr", "replace", `${a}/${plen(a)}`, "dev", "eth0", ...v6], p.netns);
    await ip(["route", "replace", `${a}/${plen(a)}`, "dev", p.hostIf], p.nodeNetns);
  }
  for (const a of remove) {
    // Already gone (a namespace made anew): nothing to undo.
    await runRaw(["ip", ...(p.nodeNetns ? ["-n", p.nodeNetns] : []), "route", "del", `${a}/${plen(a)}`, "dev", p.hostIf]); // prettier-ignore
    await runRaw(["ip", "-n", p.netns, "addr", "del", `${a}/${plen(a)}`, "dev", "eth0"]);
  }
}
