/**
 * One query to the upstream resolver, over UDP (a fresh socket, so a
 * random source port and no id sharing between clients) or TCP (a fresh
 * connection, 2-byte length framing). Both settle exactly once: the answer,
 * or an Error on timeout, socket error or oversized answer.
 */
import dgram from "node:dgram";
import net from "node:net";

export interface Upstream {
  readonly host: string;
  readonly port: number;
}

/** Resolves with the first datagram from the upstream that carries `id` and the QR bit. */
export function exchangeUdp(up: Upstream, msg: Buffer, id: number, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(up.host) ? "udp6" : "udp4");
    let settled = false;
    const done = (err: Error | undefined, answer?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(answer as Buffer);
    };
    const timer = setTimeout(() => done(new Error("upstream timed out")), timeoutMs);
    sock.on("error", (e) => done(e));
    sock.on("message", (m, rinfo) => {
      if (rinfo.port !== up.port || m.length < 12) return;
      if (m.readUInt16BE(0) !== id || !(m.readUInt16BE(2) & 0x8000)) return;
      done(undefined, m);
    });
    sock.send(msg, up.port, up.host, (e) => {
      if (e) done(e);
    });
  });
}

export function exchangeTcp(up: Upstream, msg: Buffer, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(up.port, up.host);
    let buf: Buffer = Buffer.alloc(0);
    let settled = false;
    const done = (err: Error | undefined, answer?: Buffer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(answer as Buffer);
    };
    const timer = setTimeout(() => done(new Error("upstream timed out")), timeoutMs);
    sock.on("error", (e) => done(e));
    sock.on("close", () => done(new Error("upstream closed before answering")));
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length >= 2 + len) done(undefined, Buffer.from(buf.subarray(2, 2 + len)));
    });
    const len = Buffer.alloc(2);
    len.writeUInt16BE(msg.length);
    sock.write(Buffer.concat([len, msg]));
  });
}
