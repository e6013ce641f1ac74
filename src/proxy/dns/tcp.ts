/**
 * DNS over TCP on the proxy's listener: 2-byte length framing, queries
 * pipelined on one connection (at most `maxTcpPipelined` outstanding),
 * answers written back as they come.
 *
 *   bytes --length prefix--> query --answer(msg, src, reply)--> length-prefixed reply
 *   a length below a header or above maxTcpQuery, or too many outstanding --> connection closed
 */
import type net from "node:net";
import type { DnsProxyLimits } from "./proxy.js";

export type TcpAnswer = (
  msg: Buffer,
  src: { readonly address: string; readonly port: number },
  reply: (b: Buffer | undefined) => void,
) => void;

export function serveTcpQueries(
  sock: net.Socket,
  limits: Pick<DnsProxyLimits, "tcpIdleMs" | "maxTcpQuery" | "maxTcpPipelined">,
  dropped: () => void,
  answer: TcpAnswer,
): void {
  let buf: Buffer = Buffer.alloc(0);
  let pending = 0;
  sock.setTimeout(limits.tcpIdleMs, () => sock.destroy());
  sock.on("error", () => undefined);
  sock.on("data", (d: Buffer) => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (len < 12 || len > limits.maxTcpQuery || pending >= limits.maxTcpPipelined) {
        dropped();
        sock.destroy();
        return;
      }
      if (buf.length < 2 + len) return;
      const msg = Buffer.from(buf.subarray(2, 2 + len));
      buf = buf.subarray(2 + len);
      pending++;
      const src = { address: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 };
      answer(msg, src, (reply) => {
        pending--;
        if (!reply || sock.destroyed) return;
        const out = Buffer.allocUnsafe(2 + reply.length);
        out.writeUInt16BE(reply.length, 0);
        reply.copy(out, 2);
        sock.write(out);
      });
    }
  });
}
