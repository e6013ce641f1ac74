/**
 * A proxy's own listeners, to refuse traffic that was sent to the proxy instead of redirected to
 * it. Such traffic has, in conntrack, the proxy itself as its original destination; forwarding it
 * there reaches the proxy again, and again (a loop: the DNS proxy made 1,027 conntrack lookups for
 * one query, the L7 proxy one more connection per hop), whatever rule admitted it. The DNS proxy
 * (dns/exchange.ts), the L7 proxy (runtime/main.ts) and the gateway check each original
 * destination or backend against their listeners with this one predicate, so that they cannot
 * drift apart.
 *
 * Built once at start: a set lookup per query or connection, no syscall. A listener on every
 * address (0.0.0.0, ::) is reached on any address with its port. IPv4-mapped IPv6 (`::ffff:a.b.c.d`)
 * is the IPv4 address.
 */
import { plainAddress } from "./runtime/table.js";

export type OwnListener = (host: string, port: number) => boolean;

export function ownListeners(hosts: readonly string[], ports: readonly number[]): OwnListener {
  const own = new Set(hosts.map(plainAddress));
  const portSet = new Set(ports.filter((p) => p > 0));
  const anyHost = own.has("0.0.0.0") || own.has("::");
  return (host, port) => portSet.has(port) && (anyHost || own.has(plainAddress(host)));
}
