/**
 * One request forwarded to an HTTP/1.1 backend endpoint over a pooled connection
 * (upstream.ts), its response streamed back to the client as framed by the backend:
 *
 *   wire --UpstreamConn (kept alive)--> endpoint
 *   endpoint --head parsed once, rewritten (response-head.ts), body as framed (response-body.ts)--> client
 *     (the common response: head and body as read, one uncopied write)
 *     complete: connection back to the pool (unless it must close) | close-delimited: the backend's FIN ends it
 *     connect failure / closed before the head: another endpoint (or a fresh connection) once, then 503
 *     failure after the head: 502 event, the client connection destroyed (it cannot be told otherwise)
 *
 * Backpressure: a client that does not read pauses the backend connection until it drains.
 */
import type { ByteConn } from "../proxy/http/conn.js";
import { parseResponseHead } from "../proxy/http/response.js";
import type { HeaderModifier } from "./model.js";
import { ResponseBody } from "./response-body.js";
import { rewriteHead } from "./response-head.js";
import type { UpstreamPool } from "./upstream.js";
import type { UpstreamConn, UpstreamHandler } from "./upstream-conn.js";

export interface ForwardOutcome {
  /**
   * "done": the response went out whole; "unsent": nothing reached the client (answer 503); "cut": part did;
   * "expired": the route's timeouts passed before the response head (answer 504).
   */
  readonly kind: "done" | "unsent" | "cut" | "expired";
  readonly status: number;
  readonly address: string;
  readonly reason?: string;
}

/**
 * The request's side of the attempts (the exchange, one request at a time): made once per client
 * connection, so that a request costs no callbacks of its own.
 */
export interface H1Owner {
  /** This attempt's limit from the route's timeouts (timeouts.ts), ms from now; undefined: none. */
  limitMs(): number | undefined;
  /** An endpoint address, avoiding `avoid` when there is another; undefined: none left. */
  pick(avoid: string | undefined): string | undefined;
  /** The client connection is gone (no retry for it). */
  clientClosed(): boolean;
  /** The response ends the client connection (close-delimited, or the client asked). */
  mustClose(): void;
  outcome(o: ForwardOutcome): void;
}

export interface ForwardH1 {
  readonly pool: UpstreamPool;
  readonly client: ByteConn;
  readonly port: number;
  readonly method: string;
  /** The client asked to close after this response. */
  readonly close: boolean;
  readonly wire: Buffer;
  readonly mods: readonly HeaderModifier[];
  readonly maxHead: number;
  readonly connectTimeoutMs: number;
  readonly owner: H1Owner;
}

const EMPTY = Buffer.alloc(0);

/** Forwards `x.wire` to an endpoint `addr` (attempt 0: may retry once elsewhere). */
export function forwardH1(x: ForwardH1, addr: string, attempt: number): void {
  const { up, reused } = x.pool.acquire(addr, x.port);
  new Attempt(x, addr, attempt, up, reused).start();
}

/** One attempt on one backend connection; it is that connection's handler until it finishes. */
class Attempt implements UpstreamHandler {
  /** The response's body, once its head is read. */
  private body: ResponseBody | undefined;
  private pending: Buffer = EMPTY;
  private status = 0;
  /** The backend's connection is not reusable after this response (its head said so). */
  private close = false;
  private finished = false;
  private quiet = 0;
  /** A backend that does not answer the SYN (dropped by its policy, gone): 503 after the connect timeout. */
  private timedOut = false;
  /** Only while connecting: a kept-alive connection costs no timer per request. */
  private timer: NodeJS.Timeout | undefined;
  private cut: NodeJS.Timeout | undefined;

  constructor(
    private readonly x: ForwardH1,
    private readonly addr: string,
    private readonly attempt: number,
    private readonly up: UpstreamConn,
    private readonly reused: boolean,
  ) {}

  start(): void {
    const up = this.up;
    if (!up.connected) {
      const t = setTimeout(() => {
        this.timedOut = true;
        up.destroy("connect timeout");
      }, this.x.connectTimeoutMs);
      this.timer = t;
      up.whenConnected(() => clearTimeout(t));
    }
    const limit = this.x.owner.limitMs();
    if (limit !== undefined) this.cut = setTimeout(() => this.expired(), limit);
    up.use(this);
    up.conn.write(this.x.wire);
  }

  data(d: Buffer): void {
    if (this.finished) return;
    this.quiet = 0;
    if (this.body) return this.forward(d, 0, this.body.take(d, 0), undefined);
    this.pending = this.pending.length === 0 ? d : Buffer.concat([this.pending, d]);
    for (;;) {
      const r = parseResponseHead(this.pending, this.x.method, this.x.maxHead);
      if (r.kind === "incomplete") return;
      if (r.kind === "error") return this.failed(r.reason);
      if (r.head.interim) {
        this.pending = this.pending.subarray(r.length);
        continue;
      }
      const read = this.pending;
      this.pending = EMPTY;
      this.status = r.head.status;
      this.close = r.head.close;
      this.body = new ResponseBody(r.head.framing);
      const n = this.body.take(read, r.length);
      if (typeof n !== "number") return this.failed(n.error);
      const keepClient = !this.x.close && r.head.framing.kind !== "close";
      if (!keepClient) this.x.owner.mustClose();
      const raw = read.subarray(0, r.length);
      const head = rewriteHead(raw, this.x.mods, keepClient);
      return this.forward(read, r.length, n, head === raw ? undefined : head);
    }
  }

  /**
   * Sends the response's bytes in this read on: `read[0, at)` is its head (`head` instead, when
   * the rewrite changed it), then `n` bytes of body. Then its end, if it came.
   */
  private forward(read: Buffer, at: number, n: number | { readonly error: string }, head?: Buffer): void {
    if (typeof n !== "number") return this.failed(n.error);
    const end = at + n;
    // One write for head and body: split writes would meet Nagle and delayed ACKs. A head the
    // rewrite left as it is goes out with its body as read, uncopied.
    if (!head) this.send(end === read.length ? read : read.subarray(0, end));
    else this.send(n === 0 ? head : Buffer.concat([head, read.subarray(at, end)]));
    const body = this.body as ResponseBody;
    if (!body.done) return;
    this.finish(!this.close && end === read.length);
    this.complete();
  }

  end(): void {
    this.upstreamEnded("upstream closed before the response ended");
  }

  gone(why: string): void {
    this.upstreamEnded(why);
  }

  /** Two quiet periods of the pool's idle time (60 s by default) in flight: the backend is stuck. */
  idle(): void {
    if (++this.quiet >= 2) this.up.destroy("backend idle for 60 s");
  }

  private send(out: Buffer): void {
    if (out.length > 0 && !this.x.client.write(out)) {
      const conn = this.up.conn;
      conn.pause();
      this.x.client.onceDrain(() => conn.resume());
    }
  }

  private finish(reuse: boolean): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    clearTimeout(this.cut);
    if (reuse) {
      this.up.conn.resume(); // paused for a slow client on its last read: the pool's reader must see it
      this.x.pool.release(this.addr, this.x.port, this.up);
    } else this.up.destroy();
  }

  private complete(): void {
    this.x.owner.outcome({ kind: "done", status: this.status, address: this.addr });
  }

  private failed(why: string): void {
    if (this.finished) return;
    this.finish(false);
    const x = this.x;
    // Nothing reached the client yet: another endpoint (or a fresh connection) once.
    if (this.body === undefined && this.attempt === 0 && !this.timedOut && !x.owner.clientClosed()) {
      const next = x.owner.pick(this.reused ? undefined : this.addr);
      if (next !== undefined) return forwardH1(x, next, 1);
    }
    const headDone = this.body !== undefined;
    x.owner.outcome({
      kind: headDone ? "cut" : "unsent",
      status: headDone ? 502 : 503,
      address: this.addr,
      reason: why,
    });
  }

  /** A route timeout: the backend connection is closed (never pooled half read); 504 if no head was sent yet. */
  private expired(): void {
    if (this.finished) return;
    this.finish(false);
    const reason = "the route's timeouts were exceeded";
    const headDone = this.body !== undefined;
    this.x.owner.outcome({ kind: headDone ? "cut" : "expired", status: headDone ? this.status : 504, address: this.addr, reason }); // prettier-ignore
  }

  private upstreamEnded(why: string): void {
    if (this.finished) return;
    if (this.body?.endOfInput()) {
      this.finish(false);
      return this.complete();
    }
    this.failed(why);
  }
}

/** How long a mirror copy's connection may wait for the copy's answer (as before: a bound on open copies). */
const MIRROR_LINGER_MS = 10_000;

/**
 * A RequestMirror copy: sent on a connection of its own, closed once the copy's answer starts, or after
 * MIRROR_LINGER_MS. No half-close right after the write: servers that answer a turn later dropped the copy.
 */
export function mirrorH1(pool: UpstreamPool, addr: string, port: number, wire: Buffer): void {
  const { up } = pool.acquire(addr, port);
  const linger = setTimeout(() => up.destroy("mirror copy unanswered"), MIRROR_LINGER_MS);
  linger.unref();
  const done = (): void => {
    clearTimeout(linger);
    up.destroy();
  };
  up.use({ data: done, end: done, gone: () => clearTimeout(linger), idle: done });
  up.conn.write(wire);
}
