/**
 * UDP queries to upstream resolvers over a few long-lived sockets instead of
 * a fresh socket per query (a socket, a bind and a close per query were most
 * of the DNS proxy's cost).
 *
 *   exchange(up, query, clientId, done)
 *     --> the current socket for `up` (connected to it: the kernel drops datagrams from anyone else)
 *     --> query sent with a fresh random id (unique among that socket's outstanding queries)
 *     <-- the datagram carrying that id and the QR bit: id set back to the client's --> done(answer)
 *     <-- nothing within timeoutMs (one TimeoutQueue, no timer per query) --> done(Error)
 *
 * What a fresh socket per query gave, and how it is kept: an off-path
 * spoofer must still guess a random source port and a random 16-bit id
 * (crypto random, never the client's id), and the answer must carry the
 * query's question (readAnswer checks). A socket carries at most
 * `queriesPerSocket` queries, then a new one (a new random port) takes
 * over and the old one closes when its last answer arrived or timed out.
 * Clients never share an id: each query gets its own. Idle sockets beyond
 * `maxIdleSockets` are closed, so many upstream addresses cannot pile up
 * sockets (outstanding ones are bounded by the proxy's maxInflight).
 */
import { randomFillSync } from "node:crypto";
import dgram from "node:dgram";
import net from "node:net";
import { TimeoutQueue, type Deadline } from "../deadlines.js";
import { dnsIo, NativeUdp } from "./native-io.js";
import type { Upstream } from "./upstream.js";

/** Exactly once per exchange: the answer (id set back to the client's), or why there is none. */
export type UdpAnswer = (err: Error | undefined, answer?: Buffer) => void;

export interface UdpPoolParams {
  readonly timeoutMs: number;
  /** Queries one socket carries before a new one (new source port) replaces it. Default 256. */
  readonly queriesPerSocket?: number;
  /** Sockets without outstanding queries kept open for reuse. Default 8. */
  readonly maxIdleSockets?: number;
  /** Socket errors (for stats): the affected queries fail with an Error as well. */
  readonly onSocketError?: (e: Error) => void;
  /** The sockets' path: native (recvmmsg/sendmmsg, native-io.ts) when the addon is built, else dgram. */
  readonly io?: "native" | "dgram";
}

/** What the pool needs of a socket connected to one upstream (dgram's or native-io's). */
interface ConnectedUdp {
  send(b: Buffer): void;
  close(): void;
}

interface Pending {
  readonly wireId: number;
  readonly clientId: number;
  readonly done: UdpAnswer;
  deadline: Deadline | undefined;
}

class PoolSocket {
  readonly pending = new Map<number, Pending>();
  /** Sends waiting for connect(). */
  queued: Buffer[] | undefined = [];
  used = 0;
  closed = false;

  sock: ConnectedUdp | undefined;
  /** The same socket when it is the add-on's: it can send the client's bytes under the wire id. */
  native: NativeUdp | undefined;

  constructor(readonly key: string) {}
}

export class UdpUpstreamPool {
  private readonly current = new Map<string, PoolSocket>();
  private readonly idle = new Set<PoolSocket>();
  private readonly deadlines: TimeoutQueue;
  private readonly perSocket: number;
  private readonly maxIdle: number;
  private ids = new Uint16Array(0);
  private nextId = 0;
  private closed = false;
  /** The socket the last query used and its upstream (checked still current before reuse). */
  private last: PoolSocket | undefined;
  private lastHost = "";
  private lastPort = -1;
  /** Sockets open now (current, idle and retiring ones with answers outstanding): for tests. */
  readonly sockets = new Set<PoolSocket>();

  constructor(private readonly params: UdpPoolParams) {
    this.deadlines = new TimeoutQueue(params.timeoutMs);
    this.perSocket = Math.max(1, Math.min(params.queriesPerSocket ?? 256, 16384));
    this.maxIdle = Math.max(0, params.maxIdleSockets ?? 8);
  }

  exchange(up: Upstream, msg: Buffer, clientId: number, done: UdpAnswer): void {
    if (this.closed) return done(new Error("the proxy is stopping"));
    if (msg.length < 12) return done(new Error("query shorter than a DNS header"));
    const s = this.socketFor(up);
    s.used++;
    if (s.used >= this.perSocket) this.current.delete(s.key); // retires once its answers are in
    this.idle.delete(s);
    const wireId = this.freshId(s);
    const p: Pending = { wireId, clientId, done, deadline: undefined };
    s.pending.set(wireId, p);
    p.deadline = this.deadlines.add(() => this.settle(s, p, new Error("upstream timed out")));
    // The client's buffer keeps the client's id: the add-on's socket writes the wire id into the
    // copy it sends anyway (no buffer of our own per query); dgram gets a copy.
    if (s.native) return s.native.send(msg, undefined, wireId);
    const out = Buffer.from(msg);
    out.writeUInt16BE(wireId, 0);
    if (s.queued) s.queued.push(out);
    else this.send(s, out);
  }

  close(): void {
    this.closed = true;
    this.deadlines.stop();
    for (const s of [...this.sockets]) this.fail(s, new Error("the proxy is stopping"));
  }

  private socketFor(up: Upstream): PoolSocket {
    // Most queries go where the last one went (one resolver): its socket without building the key.
    const last = this.last;
    if (last && up.port === this.lastPort && up.host === this.lastHost && !last.closed && this.current.get(last.key) === last) return last; // prettier-ignore
    const key = `${up.host}|${up.port}`;
    const have = this.current.get(key);
    if (have && !have.closed) return this.remember(up, have);
    const s = new PoolSocket(key);
    this.remember(up, s);
    this.current.set(key, s);
    this.sockets.add(s);
    const io = dnsIo(this.params.io);
    if (io && net.isIP(up.host) !== 0) {
      // Connected at once (a fresh random source port): nothing waits for connect().
      const n = NativeUdp.connect(io, up.host, up.port, 65535, {
        message: (m) => this.onMessage(s, m),
        error: (e) => {
          this.params.onSocketError?.(e);
          this.fail(s, e);
        },
      });
      if (n instanceof NativeUdp) {
        s.sock = n;
        s.native = n;
        s.queued = undefined;
        return s;
      }
      // Not connected (no route, say): dgram tries the same and reports it as a socket error.
    }
    const sock = dgram.createSocket(net.isIPv6(up.host) ? "udp6" : "udp4");
    s.sock = sock;
    sock.on("message", (m) => this.onMessage(s, m));
    sock.on("error", (e) => {
      this.params.onSocketError?.(e);
      this.fail(s, e);
    });
    sock.connect(up.port, up.host, () => {
      const q = s.queued ?? [];
      s.queued = undefined;
      for (const b of q) this.send(s, b);
    });
    return s;
  }

  private remember(up: Upstream, s: PoolSocket): PoolSocket {
    this.last = s;
    this.lastHost = up.host;
    this.lastPort = up.port;
    return s;
  }

  private send(s: PoolSocket, b: Buffer): void {
    if (s.closed) return;
    try {
      // No callback: a send error arrives as the socket's 'error' event (the
      // socket's queries fail, a new socket takes over), and Node skips a
      // completion callback per datagram.
      s.sock?.send(b);
    } catch (e) {
      this.settle(s, s.pending.get(b.readUInt16BE(0)), e instanceof Error ? e : new Error(String(e)));
    }
  }

  private onMessage(s: PoolSocket, m: Buffer): void {
    // Connected: only the upstream's address and port reach this socket.
    if (m.length < 12 || !(m.readUInt16BE(2) & 0x8000)) return;
    const p = s.pending.get(m.readUInt16BE(0));
    if (!p) return; // late, duplicate or forged: ignored, as the per-query socket ignored it
    m.writeUInt16BE(p.clientId, 0);
    this.settle(s, p, undefined, m);
  }

  private settle(s: PoolSocket, p: Pending | undefined, err: Error | undefined, answer?: Buffer): void {
    if (!p || s.pending.get(p.wireId) !== p) return;
    s.pending.delete(p.wireId);
    p.deadline?.cancel();
    if (s.pending.size === 0) this.drained(s);
    p.done(err, answer);
  }

  /** No answers outstanding: a retired socket closes, a current one is kept (up to maxIdle). */
  private drained(s: PoolSocket): void {
    if (this.current.get(s.key) !== s) return this.closeSocket(s);
    this.idle.add(s);
    if (this.idle.size > this.maxIdle) {
      const oldest = this.idle.values().next().value as PoolSocket;
      this.closeSocket(oldest);
    }
  }

  private fail(s: PoolSocket, e: Error): void {
    this.closeSocket(s);
    for (const p of [...s.pending.values()]) this.settle(s, p, e);
  }

  private closeSocket(s: PoolSocket): void {
    if (s.closed) return;
    s.closed = true;
    this.idle.delete(s);
    this.sockets.delete(s);
    if (this.current.get(s.key) === s) this.current.delete(s.key);
    try {
      s.sock?.close();
    } catch {
      // already closed by an error
    }
  }

  /** A crypto-random id that no outstanding query of `s` uses. */
  private freshId(s: PoolSocket): number {
    for (;;) {
      if (this.nextId >= this.ids.length) {
        this.ids = randomFillSync(new Uint16Array(4096));
        this.nextId = 0;
      }
      const id = this.ids[this.nextId++] as number;
      if (!s.pending.has(id)) return id;
    }
  }
}
