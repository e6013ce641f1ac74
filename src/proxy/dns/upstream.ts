/**
 * One query to the upstream resolver over TCP (a fresh connection, 2-byte
 * length framing; UDP goes through udp-pool.ts). It settles exactly once:
 * the answer, or an Error on timeout, socket error or early close.
 */
import net from "node:net";

export interface Upstream {
  readonly host: string;
  readonly port: number;
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
