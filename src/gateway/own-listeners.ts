/**
 * The gateway's own listeners, which a backend endpoint must never be. Endpoints come from
 * EndpointSlices, which tenants write: one that lists the gateway's own address and port would
 * have the gateway proxy each request to itself, which routes it to itself again (an
 * amplification loop against a shared gateway). Such an endpoint is never connected to: another
 * endpoint of the backend is picked, and when there is none the request gets the 500 of a backend
 * the gateway cannot use (the Gateway API's answer for an invalid backendRef).
 *
 *   table update --set(ports)--> per listener port: the proxies' ownListeners predicate of its addresses
 *   request --pickEndpoint(endpoints, port)--> address | NO_ENDPOINT (503) | OWN_LISTENER (500)
 *
 * The predicate is the proxies' (src/proxy/own-listeners.ts: IPv4-mapped addresses are IPv4), one
 * per port, as the gateway's listeners are address:port pairs. The gateway listens on its own
 * addresses, never on a wildcard. An endpoint's IPv6 address is compared in its canonical spelling
 * (a tenant may write fd00:0::1 for fd00::1), and each answer is kept per address string: the
 * check is a Map lookup per request, no syscall. The memo holds at most the endpoint addresses
 * seen and starts anew at each table update (the endpoints come with it).
 */
import net from "node:net";
import { ownListeners, type OwnListener } from "../proxy/own-listeners.js";

/** No endpoint to pick (none ready, or only the one a retry avoids). */
export const NO_ENDPOINT = { refused: "none" } as const;
/** Every endpoint left is one of the gateway's own listeners. */
export const OWN_LISTENER = { refused: "self" } as const;
export type EndpointPick = string | typeof NO_ENDPOINT | typeof OWN_LISTENER;

interface PortListeners {
  readonly own: OwnListener;
  readonly memo: Map<string, boolean>;
}

export class OwnListeners {
  private byPort = new Map<number, PortListeners>();

  /** The listeners being served (at each table update, never per request). */
  set(ports: readonly { readonly address: string; readonly port: number }[]): void {
    const hosts = new Map<number, string[]>();
    for (const p of ports) hosts.set(p.port, [...(hosts.get(p.port) ?? []), p.address]);
    this.byPort = new Map(
      [...hosts].map(([port, h]) => [port, { own: ownListeners(h.map(canonical), [port]), memo: new Map() }]),
    );
  }

  /** `address`:`port` is one of the gateway's own listeners. */
  has(address: string, port: number): boolean {
    const at = this.byPort.get(port);
    if (at === undefined) return false;
    let own = at.memo.get(address);
    if (own === undefined) {
      own = at.own(canonical(address), port);
      at.memo.set(address, own);
    }
    return own;
  }
}

/**
 * An endpoint of `all` for a request to `port` (at random; `avoid` left out when there is another),
 * never one of the gateway's own listeners.
 */
export function pickEndpoint(
  all: readonly string[],
  port: number,
  own: OwnListeners,
  random: () => number,
  avoid?: string,
): EndpointPick {
  const choices = all.length > 1 && avoid !== undefined ? all.filter((a) => a !== avoid) : all;
  if (choices.length === 0) return NO_ENDPOINT;
  const pick = choices[Math.floor(random() * choices.length)] as string;
  if (!own.has(pick, port)) return pick;
  // Rare (a tenant listed the gateway): the other endpoints, or a refusal when there is none.
  const others = choices.filter((a) => !own.has(a, port));
  if (others.length === 0) return OWN_LISTENER;
  return others[Math.floor(random() * others.length)] as string;
}

/** The flow reason of an OWN_LISTENER refusal. */
export function ownListenerReason(service: string, port: number): string {
  return `every endpoint of ${service} on port ${port} is the gateway's own listener: refused, not proxied to itself`;
}

/** An IPv6 address in its canonical spelling (lower case, zeros compressed); others as they are. */
function canonical(address: string): string {
  if (!net.isIPv6(address)) return address;
  try {
    return new net.SocketAddress({ address, family: "ipv6" }).address;
  } catch {
    return address; // one Node does not take (a zone, say): compared as written
  }
}
