/**
 * Connections to backend endpoints, kept alive between requests (HTTP/1.1)
 * and bound to the gateway's source address when one is set (the address
 * the ipcache gives the reserved `ingress` identity, so that the backends'
 * ingress policy judges gateway traffic as coming from `ingress`). Plain TCP,
 * read and written through the native socket I/O add-on when it is there
 * (upstream-conn.ts), else Node's streams.
 *
 *   acquire(addr, port) --idle connection of that endpoint | net.connect--> UpstreamConn
 *   release(conn)       --reusable: back to the idle list (capped), else destroyed;
 *                         an idle one that reads a byte, a FIN or an error is dropped
 */
import net from "node:net";
import { proxyIo } from "../proxy/http/native-io.js";
import { sourceFor } from "./source.js";
import { UpstreamConn, type UpstreamHandler } from "./upstream-conn.js";

export interface UpstreamPoolParams {
  /** Source address of upstream IPv4 connections (undefined: the kernel picks). */
  readonly localAddress?: string;
  /** Source address of upstream IPv6 connections (source.ts). */
  readonly localAddress6?: string;
  /** Idle connections kept per endpoint. */
  readonly maxIdlePerEndpoint?: number;
  readonly idleTimeoutMs?: number;
  /** "stream": Node's streams even when the native add-on is built (default: MEMBRANE_PROXY_IO). */
  readonly io?: "native" | "stream";
}

export class UpstreamPool {
  /** Idle connections by endpoint address, then port (no key string to make and hash per request). */
  private readonly idle = new Map<string, Map<number, UpstreamConn[]>>();
  private readonly maxIdle: number;
  private readonly idleMs: number;

  constructor(private readonly p: UpstreamPoolParams = {}) {
    this.maxIdle = p.maxIdlePerEndpoint ?? 16;
    this.idleMs = p.idleTimeoutMs ?? 30_000;
  }

  /** A pooled connection (reused: true) or a new one (writes wait until it is connected). */
  acquire(address: string, port: number): { up: UpstreamConn; reused: boolean } {
    const list = this.idle.get(address)?.get(port);
    while (list && list.length > 0) {
      const up = list.pop() as UpstreamConn;
      if (!up.dead) return { up, reused: true };
    }
    const socket = net.connect({
      host: address,
      port,
      ...sourceFor(address, this.p),
    });
    socket.setNoDelay(true);
    return { up: new UpstreamConn(socket, proxyIo(this.p.io), this.idleMs), reused: false };
  }

  release(address: string, port: number, up: UpstreamConn): void {
    let ports = this.idle.get(address);
    if (!ports) this.idle.set(address, (ports = new Map()));
    let list = ports.get(port);
    if (!list) ports.set(port, (list = []));
    if (up.dead || list.length >= this.maxIdle) return void up.destroy();
    // Nothing is asked of an idle connection: any byte, FIN, error or quiet period ends it.
    up.use(new Parked(list, up));
    list.push(up);
  }

  /** Closes every idle connection. */
  close(): void {
    for (const ports of this.idle.values())
      for (const list of ports.values()) for (const up of list) up.destroy();
    this.idle.clear();
  }
}

/** An idle connection's handler: whatever happens to it ends it, and takes it out of its list. */
class Parked implements UpstreamHandler {
  constructor(
    private readonly list: UpstreamConn[],
    private readonly up: UpstreamConn,
  ) {}

  data(): void {
    this.drop();
  }

  end(): void {
    this.drop();
  }

  gone(): void {
    this.drop();
  }

  idle(): void {
    this.drop();
  }

  private drop(): void {
    const i = this.list.indexOf(this.up);
    if (i >= 0) this.list.splice(i, 1);
    this.up.destroy();
  }
}
