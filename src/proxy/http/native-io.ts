/**
 * The HTTP/1.1 proxy's sockets read and written without Node's streams: the socket's fd,
 * duplicated, watched on Node's own event loop and read/written by the addon
 * (native/membrane-proxy-io.c, built into dist/bin/membrane-proxy-io.node).
 *
 *   net.Socket (plain TCP) --takeOver: stop its reading, take what it buffered, its fd-->
 *     addon.open(fd) --readable--> read(2) into one shared buffer --copy (small) / hand off (large)--> ConnEvents.data
 *     write(b) --queued until the end of the loop turn (one microtask for every connection)-->
 *       send(2) --> all written | the rest queued, writable watched, the writer's reader paused (onceDrain)
 *
 * Why (issue 16 item 7): per request the proxy does two reads and two writes; through
 * net.Socket each runs Readable/Writable bookkeeping, a WriteWrap, a socket-timer refresh and
 * a nextTick, which profiled as most of the proxy's JavaScript time. Here each is one Node-API
 * call around the system call. The bytes still go through the same parser and judge.
 *
 * Writes wait for the end of the loop turn (the add-on delivers a turn's events together, and the
 * microtask runs after the last of them): every read of the turn is handled before the first
 * send(2), which on loopback runs the peer's TCP stack and wakes it (the peer then often took
 * the CPU mid-turn). Per connection the bytes keep their order; a destroy, reset or FIN comes
 * after what the turn accepted, as when each write was sent at once; nothing waits past its turn.
 *
 * Fail closed: an fd that cannot be taken leaves the socket to Node's streams (streamConn);
 * bytes Node reads after the takeover (someone resumed it) destroy the connection instead of
 * being lost. The net.Socket keeps the original fd and is destroyed with the connection.
 * `MEMBRANE_PROXY_IO=stream` (or deps.io "stream") keeps every socket on Node's streams.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { TLSSocket } from "node:tls";
import { fileURLToPath } from "node:url";
import type { ByteConn, ConnEvents } from "./conn.js";

type Handle = object;

export interface ProxyIoAddon {
  open(fd: number, onEvent: (events: number) => void): Handle | number;
  interest(h: Handle, mask: number): number;
  read(h: Handle, buf: Buffer, off: number, len: number): number;
  write(h: Handle, buf: Buffer, off: number, len: number): number;
  shutdown(h: Handle): number;
  close(h: Handle): void;
  readonly EAGAIN: number;
}

const ADDON = fileURLToPath(new URL("../../../bin/membrane-proxy-io.node", import.meta.url));
let loaded: ProxyIoAddon | null | undefined;

/** The addon, or null when it was not built (no gcc or no Node headers at build time) or is switched off. */
export function proxyIo(pref?: "native" | "stream"): ProxyIoAddon | null {
  if ((pref ?? process.env["MEMBRANE_PROXY_IO"]) === "stream") return null;
  if (loaded === undefined) {
    try {
      loaded = existsSync(ADDON) ? (createRequire(import.meta.url)(ADDON) as ProxyIoAddon) : null;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** Process-wide counts, for tests and diagnostics: fds taken, writes the kernel took only part of. */
export const nativeIoStats = { taken: 0, partialWrites: 0 };

const READABLE = 1;
const WRITABLE = 2;
/** NativeConn's flags (its `state`). */
const IN_TURN = 1;
const PAUSED = 2;
const EOF = 4;
const ENDING = 8;
const FIN_SENT = 16;
const DEAD = 32;
const READ_SIZE = 64 * 1024;
/** Reads up to this size are copied out of the shared buffer; larger ones take it (a new one is made). */
const COPY_BELOW = 16 * 1024;
let shared: Buffer | undefined;

/**
 * Connections holding writes of this loop turn, sent by endOfTurn in one microtask. Process-wide
 * as the loop is: one turn, one list.
 */
let turnConns: NativeConn[] = [];
let turnQueued = false;
/** A settled promise's then(): a microtask without queueMicrotask's AsyncResource per call (~300 bytes). */
const SETTLED = Promise.resolve();

function endOfTurn(): void {
  turnQueued = false;
  const cs = turnConns;
  turnConns = [];
  for (const c of cs) c.sendTurn();
}

/** Node's internal TCP handle, as much as the takeover needs (net.Socket#_handle). */
interface TcpHandle {
  fd?: unknown;
  readStop?: unknown;
  reading?: boolean;
}

/**
 * Stops Node reading `sock` and returns its fd and the bytes Node already buffered (an
 * unshifted sniffed head, say); undefined when it is not a plain TCP socket (TLS, pipe,
 * destroyed), which then stays with Node's streams.
 */
export function takeOver(sock: Socket): { fd: number; buffered: Buffer[] } | undefined {
  if (!(sock instanceof Socket) || sock instanceof TLSSocket || sock.destroyed) return undefined;
  const h = (sock as unknown as { _handle?: TcpHandle | null })._handle;
  if (!h || typeof h.fd !== "number" || h.fd < 0 || typeof h.readStop !== "function") return undefined;
  sock.pause();
  const buffered: Buffer[] = [];
  // read() may ask the handle to read again: stopped right after, before the loop can read anything.
  for (let c = sock.read() as Buffer | null; c !== null; c = sock.read() as Buffer | null) buffered.push(c);
  (h.readStop as () => number).call(h);
  h.reading = false;
  sock.on("error", () => undefined);
  return { fd: h.fd, buffered };
}

/** A socket's fd read and written through the addon (see the file's comment). */
export class NativeConn implements ByteConn {
  private h: Handle | undefined;
  /** Bytes not yet sent, in order: this turn's writes (inTurn) or what a full socket left (writable watched). */
  private queue: Buffer[] = [];
  /**
   * The connection's flags (IN_TURN, PAUSED, EOF, ENDING, FIN_SENT, DEAD) in one number. Why
   * not six booleans: V8 takes a field no object has changed yet for a constant and optimises
   * the code that reads it on that ground; the first connection to end (EOF, FIN, close) then
   * threw away the optimised code of the whole request path at once (trace-deopt: ten functions,
   * "code dependencies"), which then ran unoptimised until recompiled. IN_TURN changes on every
   * request, so this field is never taken for a constant.
   */
  private state = 0;
  private mask = 0;
  private drainers: (() => void)[] = [];
  private lastActive = performance.now();
  private idleMs = 0;
  private onIdle: (() => void) | undefined;
  private timers: NodeJS.Timeout[] = [];

  /** Not yet open (an upstream still connecting) until `open`: writes wait in the queue. */
  constructor(
    private readonly owner: Socket,
    private readonly ev: ConnEvents,
    private readonly io: ProxyIoAddon,
  ) {}

  /** Starts on `fd` (the owner's); false when the addon could not take it (the conn is destroyed). */
  open(fd: number): boolean {
    if (this.has(DEAD)) return false;
    const h = this.io.open(fd, (e) => this.onEvent(e));
    if (typeof h === "number") {
      this.destroy();
      return false;
    }
    this.h = h;
    nativeIoStats.taken++;
    // Bytes Node reads from here on would be lost to us: a bug somewhere; fail closed.
    this.owner.on("data", () => this.destroy());
    if (this.queue.length > 0) this.flush();
    else this.update();
    return true;
  }

  /**
   * Queues `b` for the end of this loop turn: true. False while the socket is not connected yet
   * or a full socket holds earlier bytes (then onceDrain). A socket that fills up at the end of
   * the turn answers false to the next write: at most one more read's bytes wait here.
   */
  write(b: Buffer): boolean {
    if (this.has(DEAD | ENDING) || b.length === 0) return true;
    this.lastActive = performance.now();
    const blocked = this.h === undefined || (this.queue.length > 0 && !this.has(IN_TURN));
    this.queue.push(b);
    if (blocked) return false;
    if (!this.has(IN_TURN)) {
      this.state |= IN_TURN;
      turnConns.push(this);
      if (!turnQueued) {
        turnQueued = true;
        void SETTLED.then(endOfTurn);
      }
    }
    return true;
  }

  /** The end of the loop turn (endOfTurn): this turn's writes go out. */
  sendTurn(): void {
    if (!this.has(IN_TURN)) return;
    this.state &= ~IN_TURN;
    if (!this.has(DEAD)) this.flush();
  }

  onceDrain(f: () => void): void {
    if (this.queue.length === 0 && this.h !== undefined) process.nextTick(f);
    else this.drainers.push(f);
  }

  pause(): void {
    this.state |= PAUSED;
    this.update();
  }

  resume(): void {
    this.state &= ~PAUSED;
    this.update();
  }

  idle(ms: number, onIdle: () => void): void {
    this.idleMs = ms;
    this.onIdle = onIdle;
    this.armIdle(ms);
  }

  endAndLinger(lingerMs: number): void {
    if (this.has(DEAD | ENDING)) return;
    this.state |= ENDING;
    this.state &= ~PAUSED;
    if (this.queue.length === 0) this.sendFin();
    else this.update();
    const t = setTimeout(() => this.destroy(), lingerMs);
    t.unref();
    this.timers.push(t);
  }

  destroy(): void {
    if (this.has(DEAD)) return;
    this.sendNow();
    this.state |= DEAD;
    this.closeFd();
    this.owner.destroy();
    process.nextTick(this.ev.gone);
  }

  reset(): void {
    if (this.has(DEAD)) return;
    this.sendNow();
    this.state |= DEAD;
    this.closeFd(); // ours first: the owner's close is then the last one, and its zero linger sends the RST
    try {
      this.owner.resetAndDestroy();
    } catch {
      this.owner.destroy();
    }
    process.nextTick(this.ev.gone);
  }

  /**
   * Before a close: what this turn accepted goes to the kernel now, as far as it takes it
   * without waiting (as when each write was sent at once); a full socket's backlog does not.
   */
  private sendNow(): void {
    const h = this.h;
    if (!this.has(IN_TURN) || h === undefined) return;
    this.state &= ~IN_TURN;
    for (const b of this.queue) if (this.io.write(h, b, 0, b.length) !== b.length) return;
  }

  private closeFd(): void {
    for (const t of this.timers) clearTimeout(t);
    // Emptied in place, not replaced: see `state` (a field first changed at a close).
    this.timers.length = 0;
    this.queue.length = 0;
    this.drainers = [];
    if (this.h !== undefined) this.io.close(this.h);
    this.h = undefined;
  }

  private armIdle(ms: number): void {
    const t = setTimeout(() => {
      const i = this.timers.indexOf(t);
      if (i >= 0) this.timers.splice(i, 1);
      if (this.has(DEAD)) return;
      const quiet = performance.now() - this.lastActive;
      if (quiet >= this.idleMs) this.onIdle?.();
      else this.armIdle(this.idleMs - quiet);
    }, ms);
    t.unref();
    this.timers.push(t);
  }

  /** Any of the flags `f` set. */
  private has(f: number): boolean {
    return (this.state & f) !== 0;
  }

  /**
   * Asks the poll for what is wanted now: reading unless paused or ended, writing while a full
   * socket's queue waits (this turn's writes are sent at its end, without asking).
   */
  private update(): void {
    if (this.h === undefined || this.has(DEAD)) return;
    const blocked = this.queue.length > 0 && !this.has(IN_TURN);
    const want = (this.has(PAUSED | EOF) ? 0 : READABLE) | (blocked ? WRITABLE : 0);
    if (want === this.mask) return;
    this.mask = want;
    if (this.io.interest(this.h, want) !== 0) this.destroy();
  }

  private onEvent(events: number): void {
    if (this.has(DEAD)) return;
    if (events < 0) return this.destroy();
    this.lastActive = performance.now();
    if ((events & WRITABLE) !== 0) this.flush();
    if ((events & READABLE) !== 0 && !this.has(DEAD | PAUSED | EOF)) this.readOnce();
  }

  private readOnce(): void {
    const h = this.h as Handle;
    const buf = (shared ??= Buffer.allocUnsafeSlow(READ_SIZE));
    const n = this.io.read(h, buf, 0, buf.length);
    if (n > 0) {
      let d: Buffer;
      if (n >= COPY_BELOW) {
        d = buf.subarray(0, n);
        shared = undefined;
      } else {
        d = Buffer.allocUnsafe(n);
        buf.copy(d, 0, 0, n);
      }
      this.ev.data(d);
    } else if (n === 0) {
      this.state |= EOF;
      this.update();
      if (this.has(FIN_SENT)) return this.destroy(); // both FINs: done
      this.ev.end();
    } else if (n !== this.io.EAGAIN) this.destroy();
  }

  /** Writes what waits; when all is out, our FIN if asked for, and the drain callbacks. */
  private flush(): void {
    const h = this.h;
    if (h === undefined || this.has(IN_TURN)) return; // this turn's writes: at its end (sendTurn)
    while (this.queue.length > 0) {
      const b = this.queue[0] as Buffer;
      const n = this.io.write(h, b, 0, b.length);
      if (n === b.length) {
        this.queue.shift();
        continue;
      }
      if (n < 0 && n !== this.io.EAGAIN) return this.destroy();
      nativeIoStats.partialWrites++;
      if (n > 0) this.queue[0] = b.subarray(n);
      return this.update();
    }
    this.update();
    if (this.has(ENDING) && !this.has(FIN_SENT)) this.sendFin();
    const d = this.drainers;
    this.drainers = [];
    for (const f of d) f();
  }

  private sendFin(): void {
    this.state |= FIN_SENT;
    if (this.h === undefined) return; // never connected: nothing to end
    if (this.io.shutdown(this.h) !== 0 || this.has(EOF)) this.destroy();
    else this.update();
  }
}

/**
 * The upstream end: `sock` is connecting; writes wait until it is connected, then its fd is
 * taken. A socket that is not plain TCP stays on Node's streams (undefined: the caller uses
 * streamConn).
 */
export function nativeUpstream(sock: Socket, ev: ConnEvents, io: ProxyIoAddon): ByteConn | undefined {
  if (!(sock instanceof Socket) || sock instanceof TLSSocket) return undefined;
  const c = new NativeConn(sock, ev, io);
  sock.pause(); // so that Node does not start reading once connected
  sock.on("error", () => c.destroy());
  sock.once("close", () => c.destroy());
  sock.once("connect", () => {
    const t = takeOver(sock);
    if (!t || t.buffered.length > 0) return c.destroy();
    c.open(t.fd);
  });
  return c;
}

/**
 * The client end: `sock` connected; the bytes Node already buffered are returned, for the
 * caller to handle before anything read later. Undefined: not plain TCP (use streamConn).
 */
export function nativeClient(
  sock: Socket,
  ev: ConnEvents,
  io: ProxyIoAddon,
): { conn: ByteConn; buffered: Buffer | undefined } | undefined {
  const t = takeOver(sock);
  if (!t) return undefined;
  const conn = new NativeConn(sock, ev, io);
  conn.open(t.fd);
  const b = t.buffered;
  return { conn, buffered: b.length === 0 ? undefined : b.length === 1 ? b[0] : Buffer.concat(b) };
}
