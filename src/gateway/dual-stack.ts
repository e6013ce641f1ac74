/**
 * The addresses a Gateway is served on. On a dual-stack node a Gateway that
 * asks for no address (spec.addresses empty; the Ingresses' internal Gateway
 * too) gets the node's default gateway address of each family, IPv4 first,
 * as a dual-stack LoadBalancer Service gets one of each; its status lists
 * both. A Gateway that names an address is served on that one alone; one
 * the agent gave addresses of its own (the LoadBalancer pool, listeners.ts)
 * on those.
 *
 *   node addresses [10.0.0.9, fd00::9], spec.addresses []         --> [10.0.0.9, fd00::9]
 *   node addresses [10.0.0.9, fd00::9], spec.addresses [fd00::9]  --> [fd00::9]
 *   own [198.18.0.2, 2001:db8:5::2]                               --> [198.18.0.2, 2001:db8:5::2]
 */
import net from "node:net";
import { CONTROLLER_NAME, type GatewayResource } from "./model.js";

/** `g.address`: the Gateway's checked address (listeners.ts), undefined when it cannot be served. */
export function servedAddresses(
  g: {
    readonly gateway: { readonly addresses: readonly unknown[] };
    readonly address: string | undefined;
    readonly own?: readonly string[];
  },
  node: readonly string[],
): string[] {
  if (g.address === undefined) return [];
  if (g.own !== undefined && g.own.length > 0) return [...g.own];
  if (g.gateway.addresses.length > 0 || g.address !== node[0]) return [g.address];
  const other = node.find((a) => net.isIPv6(a) !== net.isIPv6(g.address ?? ""));
  return other !== undefined ? [g.address, other] : [g.address];
}

/**
 * `namespace/name` of every Gateway of a class of ours that names no address in spec.addresses:
 * the ones the agent gives addresses of their own when it has a LoadBalancer pool.
 */
export function gatewaysWithoutAddress(resources: readonly GatewayResource[]): string[] {
  const ours = new Set(
    resources.flatMap((r) =>
      r.kind === "GatewayClass" && r.controllerName === CONTROLLER_NAME ? [r.meta.name] : [],
    ),
  );
  return resources.flatMap((r) =>
    r.kind === "Gateway" && ours.has(r.gatewayClassName) && r.addresses.length === 0
      ? [`${r.meta.namespace}/${r.meta.name}`]
      : [],
  );
}
