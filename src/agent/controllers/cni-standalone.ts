/**
 * A standalone CNI attachment (membrane-cni the first or only plugin): the
 * agent makes the endpoint in the runtime's namespace, as `membrane endpoint
 * create` makes one in its own, and answers the CNI result.
 *
 *   addStandalone: address from IPAM ─▶ record, identity, policy in the kernel ─▶ veth into CNI_NETNS
 *                  named CNI_IFNAME, addresses, routes (datapath/cni-wire.ts) ─▶ the endpoint + result
 *   unwireStandalone, then releaseStandalone (DEL, GC, a stale one): veth deleted, address freed
 *
 * Policy first, then the veth: the container is never reachable unenforced.
 * A failed add is undone whole: no veth, no address, no record.
 */
import { MembraneError } from "../../errors.js";
import { unwireContainer, wireContainer } from "../../datapath/cni-wire.js";
import type { NodeNetns } from "../../datapath/endpoint.js";
import type { ControllerDeps } from "../controller.js";
import type { Ipam } from "../ipam.js";
import { KEYS, type EndpointRecordV1 } from "../records.js";
import { engineSpec, type EndpointView } from "./endpoint-record.js";
import type { EndpointsController } from "./endpoints.js";
import { epKey } from "./validate.js";

export interface StandaloneDeps extends ControllerDeps {
  readonly endpoints: EndpointsController;
  readonly nodeNetns: string | undefined;
  readonly ipam: Ipam;
  readonly node: () => NodeNetns | undefined;
}

export interface StandaloneRequest {
  containerId: string;
  ifname: string;
  network: string;
  netns: string;
  namespace: string;
  name: string;
  labels: Record<string, string>;
}

/** The CNI result's interfaces, ips and routes (SPEC.md section 5, types100.Result). */
export interface StandaloneResult {
  interfaces: { name: string; mac?: string; sandbox?: string }[];
  ips: { address: string; gateway?: string; interface: number }[];
  routes: { dst: string; gw?: string }[];
}

export type StandaloneView = EndpointView & { cniResult: StandaloneResult };

/** Adds the endpoint; the caller checked the request and runs this in the agent's serial section. */
export async function addStandalone(d: StandaloneDeps, req: StandaloneRequest): Promise<StandaloneView> {
  const node = d.node();
  if (!node)
    throw new MembraneError("NETNS_FAILED", "Cannot wire a CNI attachment: the agent has not started");
  const key = epKey(req.namespace, req.name);
  const addr = await d.ipam.allocate(key);
  const id = d.endpoints.reserveId();
  const rec: EndpointRecordV1 = {
    v: 1,
    name: req.name,
    namespace: req.namespace,
    labels: req.labels,
    id,
    netns: /^\/run\/netns\/[A-Za-z0-9_.-]{1,200}$/.test(req.netns)
      ? req.netns.slice("/run/netns/".length)
      : "",
    hostIfname: `mbc${id}`,
    ipv4: addr.ipv4,
    ...(addr.ipv6 !== undefined ? { ipv6: addr.ipv6 } : {}),
    cni: { containerId: req.containerId, ifname: req.ifname, network: req.network, standalone: true },
  };
  const engine = d.engine();
  let wired = false;
  try {
    await d.store.put(KEYS.endpoints + key, JSON.stringify(rec));
    d.endpoints.put(key, rec);
    engine.upsertEndpoint(engineSpec(rec));
    d.endpoints.revisions.bump();
    await d.enforce();
    wired = true;
    const c = await wireContainer({
      nodeNetns: d.nodeNetns,
      netnsPath: req.netns,
      ifname: req.ifname,
      hostIfname: rec.hostIfname,
      ipv4: rec.ipv4,
      ...(rec.ipv6 !== undefined ? { ipv6: rec.ipv6 } : {}),
      ...(node.gateway4 !== undefined ? { gateway4: node.gateway4 } : {}),
      ...(node.gateway6 !== undefined ? { gateway6: node.gateway6 } : {}),
    });
    return { ...d.endpoints.view(rec), cniResult: cniResult(rec, req, node, c.mac) };
  } catch (e) {
    d.endpoints.revisions.fail(e);
    d.endpoints.drop(key);
    engine.deleteEndpoint(rec.namespace, rec.name);
    await d.store.delete(KEYS.endpoints + key).catch(() => undefined);
    // wireContainer undoes its own veth; this is for a failure after it (none today) and is a no-op otherwise.
    if (wired) await unwireContainer(d.nodeNetns, rec.hostIfname).catch(() => undefined);
    await d.ipam.release(key).catch(() => undefined);
    await d.enforce().catch(() => undefined);
    throw e;
  } finally {
    d.endpoints.releaseId(id); // recorded (byId has it) or undone
  }
}

/** Before the record is forgotten: the veth deleted (the kernel takes the container's end along; idempotent). */
export function unwireStandalone(d: StandaloneDeps, rec: EndpointRecordV1): Promise<void> {
  return unwireContainer(d.nodeNetns, rec.hostIfname);
}

/** After the record is forgotten and its policy gone from the kernel: the address freed (idempotent). */
export async function releaseStandalone(d: StandaloneDeps, rec: EndpointRecordV1): Promise<void> {
  await d.ipam.release(epKey(rec.namespace, rec.name));
}

function cniResult(
  rec: EndpointRecordV1,
  req: StandaloneRequest,
  node: NodeNetns,
  mac: string,
): StandaloneResult {
  const ips: StandaloneResult["ips"] = [
    { address: `${rec.ipv4}/32`, ...(node.gateway4 ? { gateway: node.gateway4 } : {}), interface: 1 },
  ];
  const routes: StandaloneResult["routes"] = node.gateway4 ? [{ dst: "0.0.0.0/0", gw: node.gateway4 }] : [];
  if (rec.ipv6 !== undefined) {
    ips.push({ address: `${rec.ipv6}/128`, ...(node.gateway6 ? { gateway: "fe80::1" } : {}), interface: 1 });
    if (node.gateway6) routes.push({ dst: "::/0", gw: "fe80::1" });
  }
  return {
    interfaces: [
      { name: rec.hostIfname },
      { name: req.ifname, ...(mac !== "" ? { mac } : {}), sandbox: req.netns },
    ],
    ips,
    routes,
  };
}
