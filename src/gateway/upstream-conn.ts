/**
 * One connection to a backend endpoint as the gateway uses it: the bytes through a ByteConn
 * (src/proxy/http/conn.ts: the native socket I/O add-on for plain TCP, Node's streams
 * otherwise), and a handler that changes with whoever holds it (a request in flight, or
 * the idle pool that drops the connection on any byte, FIN or error).
 *
 *   net.connect --nativeUpstream (writes wait until connected) | streamConn--> ByteConn
 *     ByteConn events --> UpstreamConn --> handler: the exchange's forward() | the pool's drop
 *
 * Fail closed as the proxy: a socket the add-on cannot take stays on streams; after the
 * takeover, bytes Node reads destroy the connection (native-io.ts).
 */
import type net from "node:net";
import { streamConn, type ByteConn, type ConnEvents } from "../proxy/http/conn.js";
import { nativeUpstream, type ProxyIoAddon } from "../proxy/http/native-io.js";

export interface UpstreamHandler {
  readonly data: (d: Buffer) => void;
  /** The backend's FIN. */
  readonly end: () => void;
  /** Error, reset or closed; `why` when the socket said (a connect error, say). */
  readonly gone: (why: string) => void;
  /** Nothing read or written for the idle period. */
  readonly idle: () => void;
}

const IGNORE: UpstreamHandler = {
  data: () => undefined,
  end: () => undefined,
  gone: () => undefined,
  idle: () => undefined,
};

export class UpstreamConn {
  readonly conn: ByteConn;
  /** Connected (a reused connection always is). */
  connected = false;
  dead = false;
  private handler: UpstreamHandler = IGNORE;
  private why = "upstream connection closed";
  private onConnect: (() => void) | undefined;

  /** `sock` just made by net.connect; `io` null keeps it on Node's streams. */
  constructor(
    sock: net.Socket,
    io: ProxyIoAddon | null,
    private readonly idleMs: number,
  ) {
    const ev: ConnEvents = {
      data: (d) => {
        if (!this.dead) this.handler.data(d);
      },
      end: () => {
        if (!this.dead) this.handler.end();
      },
      gone: () => this.gone(),
    };
    // Before nativeUpstream's own listeners: the reason is known when its destroy() reports gone.
    sock.on("error", (e: Error) => void (this.why = e.message));
    sock.once("connect", () => {
      this.connected = true;
      const f = this.onConnect;
      this.onConnect = undefined;
      f?.();
    });
    this.conn = (io ? nativeUpstream(sock, ev, io) : undefined) ?? streamConn(sock, ev);
    this.armIdle();
  }

  /** Who gets the events from now on. */
  use(h: UpstreamHandler): void {
    this.handler = h;
  }

  /** `f` once connected (at once when it already is). */
  whenConnected(f: () => void): void {
    if (this.connected) f();
    else this.onConnect = f;
  }

  destroy(why?: string): void {
    if (why !== undefined) this.why = why;
    this.conn.destroy();
  }

  private gone(): void {
    if (this.dead) return;
    this.dead = true;
    this.onConnect = undefined;
    const h = this.handler;
    this.handler = IGNORE;
    h.gone(this.why);
  }

  /** The ByteConn's idle callback fires once per quiet period: armed again after each. */
  private armIdle(): void {
    this.conn.idle(this.idleMs, () => {
      if (this.dead) return;
      this.armIdle();
      this.handler.idle();
    });
  }
}
