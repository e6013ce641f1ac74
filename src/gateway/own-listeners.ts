/**
 * The gateway's own listeners, which a backend endpoint must never be. Endpoints come from
 * EndpointSlices, which tenants write: one that lists the gateway's own address and port would
 * have the gateway proxy each request to itself, which routes it to itself again (an
 * amplification loop against a shared gateway). Such an endpoint is never connected to: another
 * endpoint of the backend is picked, and when there is none the request gets the 500 of a backend
 * the gateway cannot use (the Gateway API's answer for an invalid backendRef).
 *
 *   table update --set(ports)--> per listener port: its addresses (a wildcard one: every local address)
 *   request --pickEndpoint(endpoints, port)--> address | NO_ENDPOINT (503) | OWN_LISTENER (500)
 *
 * The per-request check is a compare against what was known at the last table update, no syscall:
 * a BlockList says whether an address is one of them (IPv4-mapped and differently spelled IPv6
 * addresses match too), its answer kept per address string (the BlockList takes ~2 us a call, a
 * Map lookup some ns; the memo holds at most the endpoint addresses seen, and each update starts
 * it anew, as the endpoints come with the table).
 */
import net from "node:net";
import { networkInterfaces } from "node:os";

/** No endpoint to pick (none ready, or only the one a retry avoids). */
export const NO_ENDPOINT = { refused: "none" } as const;
/** Every endpoint left is one of the gateway's own listeners. */
export const OWN_LISTENER = { refused: "self" } as const;
export type EndpointPick = string | typeof NO_ENDPOINT | typeof OWN_LISTENER;

/** Destinations that reach a local listener whatever address it is bound to. */
const UNSPECIFIED = ["0.0.0.0", "::"];

interface PortListeners {
  readonly list: net.BlockList;
  readonly memo: Map<string, boolean>;
}

export class OwnListeners {
  private byPort = new Map<number, PortListeners>();

  /** The listeners being served (at each table update, never per request). */
  set(ports: readonly { readonly address: string; readonly port: number }[]): void {
    const next = new Map<number, PortListeners>();
    let local: string[] | undefined;
    for (const p of ports) {
      let list = next.get(p.port)?.list;
      if (!list) {
        list = new net.BlockList();
        for (const a of UNSPECIFIED) add(list, a);
        next.set(p.port, { list, memo: new Map() });
      }
      if (!UNSPECIFIED.includes(p.address)) {
        add(list, p.address);
        continue;
      }
      // A wildcard listener (an IPv6 one takes IPv4 too) is reached on every address of this namespace.
      for (const a of (local ??= localAddresses())) add(list, a);
      list.addSubnet("127.0.0.0", 8, "ipv4");
    }
    this.byPort = next;
  }

  /** `address`:`port` is one of the gateway's own listeners. */
  has(address: string, port: number): boolean {
    const at = this.byPort.get(port);
    if (at === undefined) return false;
    let own = at.memo.get(address);
    if (own === undefined) {
      own = at.list.check(address, net.isIPv6(address) ? "ipv6" : "ipv4");
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

function add(list: net.BlockList, address: string): void {
  const family = net.isIP(address);
  if (family !== 0) list.addAddress(address, family === 6 ? "ipv6" : "ipv4");
}

function localAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((l) =>
    (l ?? []).map((i) => i.address.split("%")[0] ?? ""),
  );
}
