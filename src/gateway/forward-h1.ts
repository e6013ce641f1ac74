/**
 * One request forwarded to an HTTP/1.1 backend endpoint over a pooled connection
 * (upstream.ts), its response streamed back to the client as framed by the backend:
 *
 *   wire --UpstreamConn (kept alive)--> endpoint
 *   endpoint --ResponseReader: head rewritten (ResponseHeaderModifier, hop-by-hop), body as framed--> client
 *     complete: connection back to the pool (unless it must close) | close-delimited: the backend's FIN ends it
 *     connect failure / closed before the head: another endpoint (or a fresh connection) once, then 503
 *     failure after the head: 502 event, the client connection destroyed (it cannot be told otherwise)
 *
 * Backpressure: a client that does not read pauses the backend connection until it drains.
 */
import type { ByteConn } from "../proxy/http/conn.js";
import { parseResponseHead, ResponseReader } from "../proxy/http/response.js";
import type { HeaderModifier } from "./model.js";
import { rewriteHead, type UpstreamPool } from "./upstream.js";

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
  /** This attempt's limit from the route's timeouts (timeouts.ts), ms from now; undefined: none. */
  readonly limitMs?: () => number | undefined;
  /** An endpoint address, avoiding `avoid` when there is another; undefined: none left. */
  readonly pick: (avoid: string | undefined) => string | undefined;
  /** The client connection is gone (no retry for it). */
  readonly clientClosed: () => boolean;
  /** The response ends the client connection (close-delimited, or the client asked). */
  readonly mustClose: () => void;
  readonly outcome: (o: ForwardOutcome) => void;
}

/** Forwards `x.wire` to an endpoint `addr` (attempt 0: may retry once elsewhere). */
export function forwardH1(x: ForwardH1, addr: string, attempt: number): void {
  const { up, reused } = x.pool.acquire(addr, x.port);
  const reader = new ResponseReader(x.method, x.maxHead);
  let pending: Buffer = Buffer.alloc(0);
  let headDone = false;
  let status = 0;
  let finished = false;
  let quiet = 0;
  // A backend that does not answer the SYN (dropped by its policy, gone): 503 after the connect timeout.
  let timedOut = false;
  // Only while connecting: a kept-alive connection costs no timer per request.
  let timer: NodeJS.Timeout | undefined;
  if (!up.connected) {
    const t = setTimeout(() => {
      timedOut = true;
      up.destroy("connect timeout");
    }, x.connectTimeoutMs);
    timer = t;
    up.whenConnected(() => clearTimeout(t));
  }
  const limit = x.limitMs?.();
  const cut = limit === undefined ? undefined : setTimeout(() => expired(), limit);
  const finish = (reuse: boolean): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    clearTimeout(cut);
    if (reuse) {
      up.conn.resume(); // paused for a slow client on its last read: the pool's reader must see it
      x.pool.release(addr, x.port, up);
    } else up.destroy();
  };
  const complete = (): void => x.outcome({ kind: "done", status, address: addr });
  const failed = (why: string): void => {
    if (finished) return;
    finish(false);
    // Nothing reached the client yet: another endpoint (or a fresh connection) once.
    if (!headDone && attempt === 0 && !timedOut && !x.clientClosed()) {
      const next = x.pick(reused ? undefined : addr);
      if (next !== undefined) return forwardH1(x, next, 1);
    }
    x.outcome({
      kind: headDone ? "cut" : "unsent",
      status: headDone ? 502 : 503,
      address: addr,
      reason: why,
    });
  };
  // A route timeout: the backend connection is closed (never pooled half read); 504 if no head was sent yet.
  const expired = (): void => {
    if (finished) return;
    finish(false);
    const reason = "the route's timeouts were exceeded";
    x.outcome({ kind: headDone ? "cut" : "expired", status: headDone ? status : 504, address: addr, reason });
  };
  const send = (out: Buffer): void => {
    if (out.length > 0 && !x.client.write(out)) {
      up.conn.pause();
      x.client.onceDrain(() => up.conn.resume());
    }
  };
  const onData = (d: Buffer): void => {
    if (finished) return;
    quiet = 0;
    if (!headDone) {
      pending = pending.length === 0 ? d : Buffer.concat([pending, d]);
      for (;;) {
        const r = parseResponseHead(pending, x.method, x.maxHead);
        if (r.kind === "incomplete") return;
        if (r.kind === "error") return failed(r.reason);
        if (r.head.interim) {
          pending = pending.subarray(r.length);
          continue;
        }
        headDone = true;
        status = r.head.status;
        const res = reader.push(pending);
        if ("error" in res) return failed(res.error);
        const keepClient = !x.close && r.head.framing.kind !== "close";
        if (!keepClient) x.mustClose();
        // What the reader passes on starts with this head (as one piece or the start of one): the rest is body.
        const body = (res.forward.length === 1 ? (res.forward[0] as Buffer) : Buffer.concat(res.forward)).subarray(r.length); // prettier-ignore
        const h = rewriteHead(pending.subarray(0, r.length), x.mods, keepClient);
        // One write for head and body: split writes would meet Nagle and delayed ACKs.
        send(body.length === 0 ? h : Buffer.concat([h, body]));
        if (res.done) {
          finish(!res.close && res.extra === 0);
          complete();
        }
        return;
      }
    }
    const res = reader.push(d);
    if ("error" in res) return failed(res.error);
    send(res.forward.length === 1 ? (res.forward[0] as Buffer) : Buffer.concat(res.forward));
    if (res.done) {
      finish(!res.close && res.extra === 0);
      complete();
    }
  };
  const onEnd = (why: string): void => {
    if (finished) return;
    if (headDone && reader.endOfInput()) {
      finish(false);
      return complete();
    }
    failed(why);
  };
  up.use({
    data: onData,
    end: () => onEnd("upstream closed before the response ended"),
    gone: (why) => onEnd(why),
    // Two quiet periods of the pool's idle time (60 s by default) in flight: the backend is stuck.
    idle: () => void (++quiet >= 2 && up.destroy("backend idle for 60 s")),
  });
  up.conn.write(x.wire);
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
