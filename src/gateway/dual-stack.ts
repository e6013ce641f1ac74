/**
 * The addresses a Gateway is served on. On a dual-stack node a Gateway that
 * asks for no address (spec.addresses empty; the Ingresses' internal Gateway
 * too) gets the node's default gateway address of each family, IPv4 first,
 * as a dual-stack LoadBalancer Service gets one of each; its status lists
 * both. A Gateway that names an address is served on that one alone.
 *
 *   node addresses [10.0.0.9, fd00::9], spec.addresses []         --> [10.0.0.9, fd00::9]
 *   node addresses [10.0.0.9, fd00::9], spec.addresses [fd00::9]  --> [fd00::9]
 */
import net from "node:net";

/** `g.address`: the Gateway's checked address (listeners.ts), undefined when it cannot be served. */
export function servedAddresses(
  g: { readonly gateway: { readonly addresses: readonly unknown[] }; readonly address: string | undefined },
  node: readonly string[],
): string[] {
  if (g.address === undefined) return [];
  if (g.gateway.addresses.length > 0 || g.address !== node[0]) return [g.address];
  const other = node.find((a) => net.isIPv6(a) !== net.isIPv6(g.address ?? ""));
  return other !== undefined ? [g.address, other] : [g.address];
}
