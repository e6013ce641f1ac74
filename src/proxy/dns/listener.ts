/**
 * The DNS proxy's UDP listener, on one of two paths with the same behaviour:
 *
 *   native (default): native-io.ts, recvmmsg/sendmmsg through the addon
 *   dgram (fallback): Node's dgram socket; `MEMBRANE_PROXY_IO=stream`, `io: "dgram"`,
 *                     a build without the addon, or a host the addon cannot bind
 *
 *   datagram --longer than maxLen--> oversized() (dropped, counted by the proxy)
 *            --otherwise--> message(msg, src) ... reply(b, src): from the same socket to src
 *
 * Either way the listener is one socket bound to the listen address, and a
 * reply leaves from it to the address and port the query came from, so the
 * kernel's redirect (conntrack) maps it back exactly as before.
 */
import dgram from "node:dgram";
import { lookup as dnsLookup } from "node:dns";
import net from "node:net";
import type { Source } from "./exchange.js";
import { dnsIo, NativeUdp, Peer } from "./native-io.js";

export interface UdpListener {
  readonly path: "native" | "dgram";
  /**
   * Why datagrams come without their packet mark (`src.mark` stays undefined: dgram cannot read it,
   * or the kernel refused SO_RCVMARK); undefined when they come with it.
   */
  readonly noMarks: string | undefined;
  port(): number;
  /** Sends `b` to `to` (the src a message came with); a failed send is dropped (the client retries). */
  reply(b: Buffer, to: Source): void;
  close(): Promise<void>;
}

export interface UdpListenerEvents {
  readonly message: (msg: Buffer, src: Source) => void;
  readonly oversized: () => void;
  readonly error: (where: string, e: unknown) => void;
}

/**
 * The listening socket's address lookup: replies go to the address a query came from, always an
 * IP, so it is used as it is. dgram's default (dns.lookup) answers an IP on the next tick: a
 * deferred call and a closure per reply for nothing. A name (only ever the listen host) still
 * goes through dns.lookup.
 */
const literalLookup = (
  address: string,
  family: unknown,
  cb: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void => {
  const f = net.isIP(address);
  if (f !== 0) cb(null, address, f);
  else dnsLookup(address, family === 6 ? 6 : 4, cb);
};

export async function listenUdp(
  host: string,
  port: number,
  maxLen: number,
  io: "native" | "dgram" | undefined,
  ev: UdpListenerEvents,
): Promise<UdpListener> {
  const addon = dnsIo(io);
  if (addon && net.isIP(host) !== 0) {
    const u = NativeUdp.bind(addon, host, port, maxLen, {
      message: ev.message,
      oversized: ev.oversized,
      error: (e) => ev.error("udp socket", e),
    });
    if (u instanceof NativeUdp) {
      const marks = u.receiveMarks();
      return {
        path: "native",
        noMarks: marks?.message,
        port: () => u.localPort(),
        reply: (b, to) => {
          if (to instanceof Peer) u.send(b, to);
        },
        close: () => Promise.resolve(u.close()),
      };
    }
    // Not bound (the address is taken, say): dgram tries the same and reports it its own way.
  }
  const udp = dgram.createSocket({ type: net.isIPv6(host) ? "udp6" : "udp4", lookup: literalLookup });
  udp.on("message", (m, rinfo) => {
    if (m.length > maxLen) ev.oversized();
    else ev.message(m, rinfo);
  });
  udp.on("error", (e) => ev.error("udp socket", e));
  await new Promise<void>((res, rej) => {
    udp.once("error", rej);
    udp.bind(port, host, () => res());
  });
  let open = true;
  return {
    path: "dgram",
    noMarks: "the dgram socket cannot read packet marks",
    port: () => (open ? udp.address().port : 0),
    reply: (b, to) => {
      if (!open) return;
      try {
        // No completion callback: Node then skips a call back into JS per datagram, and a failed
        // send is dropped silently, as the callback did (the client retries).
        udp.send(b, to.port, to.address);
      } catch (e) {
        ev.error("udp send", e);
      }
    },
    close: () => {
      open = false;
      return new Promise<void>((r) => udp.close(() => r()));
    },
  };
}
