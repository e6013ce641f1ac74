/**
 * An address and port as the root processes accept them from the unprivileged ones: the brokers'
 * requests (proxy/runtime/ctbroker-serve.ts, encryption/mtls/broker.ts) and what the agent reads
 * from the proxy and the gateway (proxy/runtime/validate.ts, gateway/from-gateway.ts). The sender
 * parses traffic from the network and may be compromised, so what it sends is checked before a
 * root process acts on it. One guard for all, so that they cannot drift apart.
 *
 *   {address, port} from IPC --isAddrPort--> a lookup (ctnetlink), a flow   anything else: refused
 *   an address from IPC (a DNS answer's) --isAddress--> policy (toFQDNs)
 */
import { isIP } from "node:net";

export interface AddrPort {
  readonly address: string;
  readonly port: number;
}

/** The longest textual IP address (IPv6 with an IPv4 tail, 45 characters): longer is refused unparsed. */
const MAX_ADDRESS = 45;

/** `v` is an IPv4 or IPv6 address as a socket prints it: no zone (conntrack has none), no spaces. */
export function isAddress(v: unknown): v is string {
  return typeof v === "string" && v.length <= MAX_ADDRESS && !v.includes("%") && isIP(v) !== 0;
}

/**
 * `v` is `{address, port}` of its own (inherited keys do not count): an address (isAddress) and an
 * integer port 0-65535.
 * `exact`: no other key either (for askers that send exactly these two; the proxy's DNS path
 * passes the datagram's rinfo, which also has family and size).
 */
export function isAddrPort(v: unknown, exact = false): v is AddrPort {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  if (!Object.hasOwn(v, "address") || !Object.hasOwn(v, "port")) return false;
  if (exact && Object.keys(v).length !== 2) return false;
  const { address, port } = v as { address: unknown; port: unknown };
  return (
    isAddress(address) && typeof port === "number" && Number.isInteger(port) && port >= 0 && port <= 65535
  );
}
