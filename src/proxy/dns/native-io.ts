/**
 * The DNS proxy's UDP sockets without dgram: read with recvmmsg and written
 * with sendmmsg by a small addon (native/membrane-dns-io.c, built into
 * dist/bin/membrane-dns-io.node), watched on Node's own event loop.
 *
 *   readable --recv: up to 32 datagrams in one call--> copied out --> onMessage(msg, peer) each
 *   send(b, peer) --outbox (this turn's datagrams)--> one microtask --> copied into one arena --> sendmmsg
 *                 \-- the kernel's buffer full (EAGAIN): the rest waits for writable (at most MAX_OUTBOX)
 *
 * Why (issue 16 item 7): a proxied query is two datagrams in and two out, and
 * each dgram receive or send is a system call plus a call into JavaScript;
 * on this machine the system calls were most of the proxy's time. Here the
 * datagrams that are ready come in one call, and those sent in one turn of
 * the loop (the upstream queries of a batch of client queries, the replies
 * released together) leave in one. The bytes are the same bytes: the
 * listener is one bound socket, replies leave from it to the address and
 * port the query came from (conntrack undoes the redirect as before), and
 * upstream sockets are connected (only the resolver reaches them).
 *
 * Fail closed: a datagram longer than `maxLen` (or than the receive slot) is
 * never handed on, only counted; a send the kernel refuses is dropped (the
 * client retries, as with dgram); an error on an upstream socket fails its
 * queries (onError). `MEMBRANE_PROXY_IO=stream` (or `io: "dgram"`) keeps
 * dgram, as does a build without the addon.
 */
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

type Handle = object;

export interface DnsIoAddon {
  bind(host: string, port: number, onEvent: (events: number) => void): Handle | number;
  connect(host: string, port: number, onEvent: (events: number) => void): Handle | number;
  localPort(h: Handle): number;
  /** SO_RCVMARK on the socket: 0, or -errno (a kernel before 5.19: every datagram's mark stays 0). */
  rcvmark(h: Handle): number;
  interest(h: Handle, mask: number): number;
  recv(h: Handle, buf: Buffer, slot: number, meta: Int32Array, max: number): number;
  send(h: Handle, buf: Buffer, count: number, meta: Int32Array): number;
  close(h: Handle): void;
  readonly EAGAIN: number;
  readonly REC: number;
  readonly MAX_BATCH: number;
}

const ADDON = fileURLToPath(new URL("../../../bin/membrane-dns-io.node", import.meta.url));
let loaded: DnsIoAddon | null | undefined;

/** The addon, or null when it was not built or is switched off (`MEMBRANE_PROXY_IO=stream`, or pref "dgram"). */
export function dnsIo(pref?: "native" | "dgram"): DnsIoAddon | null {
  if (pref === "dgram" || (pref === undefined && process.env["MEMBRANE_PROXY_IO"] === "stream")) return null;
  if (loaded === undefined) {
    try {
      loaded = existsSync(ADDON) ? (createRequire(import.meta.url)(ADDON) as DnsIoAddon) : null;
    } catch {
      loaded = null;
    }
  }
  return loaded;
}

/** Where a datagram came from: printable (identify, flows) and raw (the reply goes back to it). */
export class Peer {
  constructor(
    readonly address: string,
    readonly port: number,
    readonly family: 4 | 6,
    /** The address's 16 bytes as four int32 (as the addon's records hold them) and the IPv6 scope. */
    readonly w0: number,
    readonly w1: number,
    readonly w2: number,
    readonly w3: number,
    readonly scope: number,
    /**
     * The datagram's packet mark (SO_RCVMARK; 0 without it): the datapath sets a datagram
     * redirected to the DNS proxy to its conntrack entry's id (runtime/dns-origins.ts).
     */
    readonly mark: number,
  ) {}
}

const READABLE = 1;
const WRITABLE = 2;
/** The largest UDP payload: nothing the kernel delivers is cut. */
const SLOT = 65536;
const BATCH = 32;
/** Batches read per readable event before the loop gets a turn (other sockets, timers). */
const BATCHES_PER_EVENT = 4;
/** Datagrams waiting for the kernel's buffer (EAGAIN) before new ones are dropped. */
const MAX_OUTBOX = 4096;
const ARENA = 256 * 1024;

/** Process-wide counts, for tests and diagnostics. */
export const dnsIoStats = {
  receiveCalls: 0,
  received: 0,
  sendCalls: 0,
  sent: 0,
  sendDropped: 0,
  oversized: 0,
};

let area: Buffer | undefined;
let arena: Buffer | undefined;
let recvMeta: Int32Array | undefined;
let recvBytes: Uint8Array | undefined;
let sendMeta: Int32Array | undefined;

/** IPv4 address strings by their raw 32 bits: most datagrams come from a few clients. */
const v4Names = new Map<number, string>();

function v4(b: Uint8Array, at: number): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** RFC 5952 text of 16 address bytes (as inet_ntop and Node print it). */
export function ipv6Text(b: Uint8Array, at = 0): string {
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push(((b[at + 2 * i] ?? 0) << 8) | (b[at + 2 * i + 1] ?? 0));
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff)
    return `::ffff:${v4(b, at + 12)}`;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (xs: number[]): string => xs.map((x) => x.toString(16)).join(":");
  if (best < 0) return hex(g);
  return `${hex(g.slice(0, best))}::${hex(g.slice(best + bestLen))}`;
}

export interface NativeUdpEvents {
  /** A datagram (its own copy) and where it came from. */
  readonly message: (msg: Buffer, peer: Peer) => void;
  /** A datagram longer than maxLen: dropped here, counted by the caller. */
  readonly oversized?: () => void;
  /** A socket error (receive or send, not EAGAIN); the socket stays open, the caller decides. */
  readonly error: (e: Error) => void;
}

interface Out {
  readonly b: Buffer;
  readonly to: Peer | undefined;
  /** A DNS id written over the first two bytes of the copy sent (b unchanged), or -1. */
  readonly id: number;
}

const errnoError = (op: string, n: number): Error =>
  Object.assign(new Error(`${op} failed: errno ${-n}`), { errno: n, syscall: op });

/** One UDP socket through the addon: a bound listener or a connected upstream socket. */
export class NativeUdp {
  private h: Handle | undefined;
  private outbox: Out[] = [];
  private flushQueued = false;
  private mask = 0;

  private constructor(
    private readonly io: DnsIoAddon,
    private readonly maxLen: number,
    private readonly ev: NativeUdpEvents,
  ) {}

  /** A listener on host:port (port 0: any), or the Error why not (the caller then uses dgram). */
  static bind(
    io: DnsIoAddon,
    host: string,
    port: number,
    maxLen: number,
    ev: NativeUdpEvents,
  ): NativeUdp | Error {
    return NativeUdp.open(io, "bind", host, port, maxLen, ev);
  }

  /** A socket connected to host:port (a fresh random source port), or the Error why not. */
  static connect(
    io: DnsIoAddon,
    host: string,
    port: number,
    maxLen: number,
    ev: NativeUdpEvents,
  ): NativeUdp | Error {
    return NativeUdp.open(io, "connect", host, port, maxLen, ev);
  }

  private static open(
    io: DnsIoAddon,
    op: "bind" | "connect",
    host: string,
    port: number,
    maxLen: number,
    ev: NativeUdpEvents,
  ): NativeUdp | Error {
    const u = new NativeUdp(io, maxLen, ev);
    const h = io[op](host, port, (e) => u.onEvent(e));
    if (typeof h === "number") return errnoError(op, h);
    u.h = h;
    u.update();
    return u;
  }

  get open(): boolean {
    return this.h !== undefined;
  }

  localPort(): number {
    return this.h === undefined ? 0 : Math.max(0, this.io.localPort(this.h));
  }

  /** Each datagram's packet mark from now on comes in its Peer (SO_RCVMARK); the Error why not. */
  receiveMarks(): Error | undefined {
    if (this.h === undefined) return errnoError("setsockopt", -9);
    const r = this.io.rcvmark(this.h);
    return r === 0 ? undefined : errnoError("setsockopt(SO_RCVMARK)", r);
  }

  /**
   * Queues one datagram (to `to`, or to the connected peer); all of this turn's leave together.
   * `id` (0..65535): sent with it as its first two bytes (a DNS id), `b` itself unchanged.
   */
  send(b: Buffer, to?: Peer, id = -1): void {
    if (this.h === undefined) return;
    // No UDP datagram is longer; flush() copies each into a 256 KiB arena and the add-on refuses a
    // record past it (a throw in a microtask): such a buffer is dropped here, counted.
    if (this.outbox.length >= MAX_OUTBOX || b.length > 65_535) {
      dnsIoStats.sendDropped++;
      return;
    }
    if (id >= 0 && b.length < 2) {
      dnsIoStats.sendDropped++;
      return;
    }
    this.outbox.push({ b, to, id });
    if (!this.flushQueued && !this.waiting) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  close(): void {
    const h = this.h;
    this.h = undefined;
    this.outbox = [];
    if (h !== undefined) this.io.close(h);
  }

  private update(): void {
    if (this.h === undefined) return;
    const want = READABLE | (this.outbox.length > 0 && this.waiting ? WRITABLE : 0);
    if (want === this.mask) return;
    this.mask = want;
    const r = this.io.interest(this.h, want);
    if (r !== 0) this.ev.error(errnoError("poll", r));
  }

  /** The last flush met a full buffer: the rest goes when the socket is writable. */
  private waiting = false;

  private onEvent(events: number): void {
    if (this.h === undefined) return;
    if (events < 0) return this.ev.error(errnoError("poll", events));
    if ((events & WRITABLE) !== 0) {
      this.waiting = false;
      this.flush();
    }
    if ((events & READABLE) !== 0) this.receive();
  }

  private receive(): void {
    const buf = (area ??= Buffer.allocUnsafeSlow(SLOT * BATCH));
    const meta = (recvMeta ??= new Int32Array(this.io.REC * BATCH));
    const bytes = (recvBytes ??= new Uint8Array(meta.buffer));
    const rec = this.io.REC;
    for (let round = 0; round < BATCHES_PER_EVENT && this.h !== undefined; round++) {
      const n = this.io.recv(this.h, buf, SLOT, meta, BATCH);
      dnsIoStats.receiveCalls++;
      if (n < 0) {
        if (n !== this.io.EAGAIN) this.ev.error(errnoError("recvmmsg", n));
        return;
      }
      dnsIoStats.received += n;
      for (let i = 0; i < n && this.h !== undefined; i++) {
        const r = i * rec;
        const len = meta[r] as number;
        if (meta[r + 1] !== 0 || len > this.maxLen) {
          dnsIoStats.oversized++;
          this.ev.oversized?.();
          continue;
        }
        const msg = Buffer.allocUnsafe(len);
        buf.copy(msg, 0, i * SLOT, i * SLOT + len);
        try {
          this.ev.message(msg, peerOf(meta, bytes, r));
        } catch (e) {
          // A bug behind this socket, never the bytes (the parsers return reasons): reported, and the
          // next datagram is read; thrown on, it would end the process from inside the addon's callback.
          this.ev.error(e instanceof Error ? e : new Error(String(e)));
        }
      }
      if (n < BATCH) return;
    }
  }

  private flush(): void {
    this.flushQueued = false;
    const h = this.h;
    if (h === undefined || this.waiting) return;
    const rec = this.io.REC;
    const max = this.io.MAX_BATCH;
    const meta = (sendMeta ??= new Int32Array(rec * max));
    while (this.outbox.length > 0) {
      // Copy as many as fit into the arena (one at least: a datagram is at most 64 KiB).
      const out = (arena ??= Buffer.allocUnsafeSlow(ARENA));
      let count = 0;
      let used = 0;
      for (const o of this.outbox) {
        if (count === max || (count > 0 && used + o.b.length > out.length)) break;
        o.b.copy(out, used);
        if (o.id >= 0) out.writeUInt16BE(o.id, used);
        const r = count * rec;
        meta[r] = used;
        meta[r + 1] = o.b.length;
        const to = o.to;
        if (to) {
          meta[r + 2] = to.family;
          meta[r + 3] = to.port;
          meta[r + 4] = to.w0;
          meta[r + 5] = to.w1;
          meta[r + 6] = to.w2;
          meta[r + 7] = to.w3;
          meta[r + 8] = to.scope;
        } else meta[r + 2] = 0;
        used += o.b.length;
        count++;
      }
      const n = this.io.send(h, out, count, meta);
      dnsIoStats.sendCalls++;
      if (n > 0) {
        dnsIoStats.sent += n;
        this.outbox = n === this.outbox.length ? [] : this.outbox.slice(n);
        continue;
      }
      if (n === this.io.EAGAIN) {
        this.waiting = true;
        return this.update();
      }
      // The first datagram was refused (unreachable, filtered, too big): dropped, as dgram drops it.
      this.outbox = this.outbox.slice(1);
      dnsIoStats.sendDropped++;
      this.ev.error(errnoError("sendmmsg", n));
      if (this.h === undefined) return;
    }
    this.update();
  }
}

function peerOf(meta: Int32Array, bytes: Uint8Array, r: number): Peer {
  const port = meta[r + 3] as number;
  const w0 = meta[r + 4] as number;
  const mark = (meta[r + 9] as number) >>> 0;
  if (meta[r + 2] === 4) {
    const key = meta[r + 4] as number;
    let name = v4Names.get(key);
    if (name === undefined) {
      if (v4Names.size >= 1024) v4Names.clear();
      v4Names.set(key, (name = v4(bytes, (r + 4) * 4)));
    }
    return new Peer(name, port, 4, w0, 0, 0, 0, 0, mark);
  }
  const [w1, w2, w3, scope] = [meta[r + 5] ?? 0, meta[r + 6] ?? 0, meta[r + 7] ?? 0, meta[r + 8] ?? 0];
  return new Peer(ipv6Text(bytes, (r + 4) * 4), port, 6, w0, w1, w2, w3, scope, mark);
}
