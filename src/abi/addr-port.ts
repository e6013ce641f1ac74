/**
 * An address and port as the brokers accept them from the unprivileged processes that ask them
 * (proxy/runtime/ctbroker-serve.ts, encryption/mtls/broker.ts): the asker parses traffic from the
 * network and may be compromised, so a request is checked before the root process acts on it.
 * One guard for both, so that they cannot drift apart.
 *
 *   {address, port} from IPC --isAddrPort--> a lookup (ctnetlink)   anything else: refused
 */
import { isIP } from "node:net";

export interface AddrPort {
  readonly address: string;
  readonly port: number;
}

/** The longest textual IP address (IPv6 with an IPv4 tail, 45 characters): longer is refused unparsed. */
const MAX_ADDRESS = 45;

/**
 * `v` is `{address, port}` of its own (inherited keys do not count): an IPv4 or IPv6 address as a
 * socket prints it (no zone: conntrack has none, and no spaces) and an integer port 0-65535.
 * `exact`: no other key either (for askers that send exactly these two; the proxy's DNS path
 * passes the datagram's rinfo, which also has family and size).
 */
export function isAddrPort(v: unknown, exact = false): v is AddrPort {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  if (!Object.hasOwn(v, "address") || !Object.hasOwn(v, "port")) return false;
  if (exact && Object.keys(v).length !== 2) return false;
  const { address, port } = v as { address: unknown; port: unknown };
  return (
    typeof address === "string" &&
    address.length <= MAX_ADDRESS &&
    !address.includes("%") &&
    isIP(address) !== 0 &&
    typeof port === "number" &&
    Number.isInteger(port) &&
    port >= 0 &&
    port <= 65535
  );
}
