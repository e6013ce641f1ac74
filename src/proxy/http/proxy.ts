/**
 * HTTP/1.1 enforcing proxy core: one client connection in, one upstream
 * connection (to the original destination) out.
 *
 *   client bytes --parseRequestHead (strict)--> lookup --judgedRequest, compileHttpRules.match--> 403 | forward
 *   forward: serializeRequest(normalised path) [+ body, re-chunked] --> upstream
 *   (judgedRequest and serializeRequest read the same parsed field list: what is judged is what is sent;
 *   a head no action or normalisation changed, whose bytes are exactly that serialisation
 *   (parseRequestHead's `verbatim`), is sent as read, without writing it again)
 *   upstream bytes --ResponseReader (framing only)--> client, L7Event to the sink
 *
 * Requests are served one at a time in arrival order (pipelined requests
 * wait in the buffer), so responses, whether ours (403/400) or upstream's,
 * go back in order. A request's head and body up to `maxBufferedBody` are
 * held until the body's framing is verified, so a request with broken
 * framing reaches upstream not at all (larger bodies, and `Expect:
 * 100-continue`, are streamed; a framing error then aborts the upstream
 * connection). Policy is looked up per request: a change applies to live
 * keep-alive connections. No policy => reset (fail closed).
 *
 * Sockets are read and written through ByteConn (conn.ts): plain TCP through
 * the native addon when built (native-io.ts: no Node streams per request),
 * TLS and the rest through Node's streams; the parsing and judging are the
 * same. The caller's server should use `allowHalfOpen: true`, so that a
 * client which half-closes after its request still receives the response.
 */
import type { Socket } from "node:net";
import { performance } from "node:perf_hooks";
import { normalizeHttpPath } from "../../policy/l7/http.js";
import {
  guardSink,
  l7Parser,
  lookupKey,
  type ConnectionInfo,
  type L7Event,
  type L7LookupKey,
  type L7LookupResult,
  type L7Verdict,
} from "../types.js";
import { ChunkedDecoder, encodeChunk, LAST_CHUNK } from "./chunked.js";
import { streamConn, type ByteConn, type ConnEvents } from "./conn.js";
import { DEFAULT_HTTP_LIMITS, type HttpProxyDeps, type HttpProxyLimits } from "./deps.js";
import type { Exchange } from "./exchange.js";
import { actionTexts, judgeHead, repeatedRuleHeader } from "./judged.js";
import { nativeClient, nativeUpstream, proxyIo } from "./native-io.js";
import { badGateway, badRequest, forbidden } from "./replies.js";
import { parseRequestHead, serializeRequest, type RequestHead } from "./request.js";
import { ResponseReader } from "./response.js";
import { traceIdOfFields } from "./trace-context.js";

export { DEFAULT_HTTP_LIMITS, type HttpProxyDeps, type HttpProxyLimits } from "./deps.js";

/**
 * Takes over `client` (paused or flowing: bytes it already buffered, e.g. an unshifted sniffed
 * head, come first); returns at once, the connection lives on its events.
 */
export function handleHttpConnection(client: Socket, info: ConnectionInfo, deps: HttpProxyDeps): void {
  new HttpConnection(info, { ...deps, sink: guardSink(deps.sink) }).start(client);
}

const EMPTY = Buffer.alloc(0);
const NO_TEXTS: readonly string[] = Object.freeze([]);
type Mutable<T> = { -readonly [K in keyof T]: T[K] };

class HttpConnection {
  private readonly limits: HttpProxyLimits;
  /** The policy lookup's key: the connection's, asked again for every request. */
  private readonly key: L7LookupKey;
  private inBuf: Buffer = EMPTY;
  private ex: Exchange | undefined;
  private client!: ByteConn;
  private upstream: ByteConn | undefined;
  /**
   * Both true until start(): before it there is no client. Written on every connection, so V8
   * does not take them for constants and drop the optimised request path at the first close.
   */
  private closed = true;
  private clientEnded = true;

  constructor(
    private readonly info: ConnectionInfo,
    private readonly deps: HttpProxyDeps,
  ) {
    this.limits = { ...DEFAULT_HTTP_LIMITS, ...deps.limits };
    this.key = lookupKey(info);
  }

  start(sock: Socket): void {
    this.closed = this.clientEnded = false;
    const ev: ConnEvents = {
      data: (d) => this.onClientData(d),
      end: () => {
        this.clientEnded = true;
        // A request whose body never completes cannot be answered.
        if (!this.ex || !this.ex.bodyDone) this.finish();
      },
      gone: () => this.destroy(),
    };
    sock.setNoDelay(true);
    const io = proxyIo(this.deps.io);
    const native = io ? nativeClient(sock, ev, io) : undefined;
    this.client = native?.conn ?? streamConn(sock, ev);
    if (this.policy() === undefined) return this.reset("no L7 policy for this connection");
    this.client.idle(this.limits.idleTimeoutMs, () => this.destroy());
    if (native?.buffered) this.onClientData(native.buffered);
    if (!native) sock.resume();
  }

  private onClientData(d: Buffer): void {
    if (this.closed) return;
    this.inBuf = this.inBuf.length === 0 ? d : Buffer.concat([this.inBuf, d]);
    this.guarded(() => this.process());
  }

  /** A bug or a policy that does not compile resets this connection, never the process (fail closed). */
  private guarded(f: () => void): void {
    try {
      f();
    } catch (e) {
      if (!this.closed) this.reset(`internal error: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /** As policyFor (types.ts), with the connection's key made once. */
  private policy(): L7LookupResult | undefined {
    let p: L7LookupResult | undefined;
    try {
      p = this.deps.lookup.forConnection(this.key);
    } catch {
      return undefined;
    }
    return p && l7Parser(p, "http") ? p : undefined;
  }

  private process(): void {
    while (!this.closed) {
      const ex = this.ex;
      if (ex && ex.bodyDone) {
        if (this.inBuf.length > this.limits.maxPendingBytes) this.client.pause();
        return;
      }
      if (ex) {
        if (this.inBuf.length === 0 || !this.body(ex)) return;
        continue;
      }
      if (this.inBuf.length === 0) return this.idle();
      const r = parseRequestHead(this.inBuf, this.limits);
      if (r.kind === "incomplete") return this.idle();
      if (r.kind === "error") return this.badRequest(r.reason, undefined);
      // The head's bytes as read, when they are exactly what serializeRequest would write.
      const raw = r.verbatim ? this.inBuf.subarray(0, r.length) : undefined;
      this.inBuf = r.length === this.inBuf.length ? EMPTY : this.inBuf.subarray(r.length);
      this.begin(r.head, raw);
    }
  }

  /** Between requests: a client that has sent its last byte is done. */
  private idle(): void {
    if (this.clientEnded) this.finish();
  }

  private begin(received: RequestHead, raw: Buffer | undefined): void {
    const policy = this.policy();
    if (!policy) return this.reset("no L7 policy for this connection");
    const path = normalizeHttpPath(received.target);
    if (repeatedRuleHeader(received, policy)) {
      return this.badRequest("a header named by an HTTP rule appears more than once", undefined);
    }
    // The rules judge the very field list serializeRequest forwards (judged.ts),
    // as the header mismatch actions of each stage leave it.
    const { allowed, rule, req: head, judged, actions } = judgeHead(policy, received, path);
    if (allowed) this.deps.onJudged?.(judged);
    const f = head.framing;
    // Unchanged (no action edited it, the path needed no normalising): forwarded as received, no copy.
    const unchanged = raw !== undefined && head === received && path === received.target;
    const ex: Exchange = {
      head,
      actions: allowed && actions.length > 0 ? actionTexts(actions) : NO_TEXTS,
      path,
      allowed,
      rule,
      started: performance.now(),
      held: [unchanged ? raw : serializeRequest(head, path)],
      heldBytes: 0,
      committed: false,
      bodyLeft: f.kind === "length" ? f.length : 0,
      chunked: f.kind === "chunked" ? new ChunkedDecoder({ strict: true }) : undefined,
      bodyDone: f.kind === "none",
      discarded: 0,
      reader: new ResponseReader(head.method, this.limits.maxHeadBytes),
    };
    this.ex = ex;
    if (!allowed) {
      const close = head.close || head.expectContinue;
      this.emit(ex, "denied", 403, "no HTTP rule matched");
      this.client.write(forbidden(close));
      if (close) return this.finish();
      if (ex.bodyDone) this.ex = undefined;
      return;
    }
    if (head.expectContinue) this.commit(ex);
    if (ex.bodyDone) this.commit(ex);
  }

  /** Consumes body bytes of the current request; false when more input is needed. */
  private body(ex: Exchange): boolean {
    let pieces: Buffer[];
    if (ex.chunked) {
      const r = ex.chunked.push(this.inBuf);
      if ("error" in r) {
        this.badRequest(r.error, ex);
        return false;
      }
      this.inBuf = this.inBuf.subarray(r.consumed);
      pieces = r.data.flatMap(encodeChunk);
      if (r.done) {
        pieces.push(LAST_CHUNK);
        ex.bodyDone = true;
      }
    } else {
      const n = Math.min(ex.bodyLeft, this.inBuf.length);
      pieces = [this.inBuf.subarray(0, n)];
      this.inBuf = this.inBuf.subarray(n);
      ex.bodyLeft -= n;
      ex.bodyDone = ex.bodyLeft === 0;
    }
    if (!ex.allowed) {
      ex.discarded += pieces.reduce((s, b) => s + b.length, 0);
      if (ex.discarded > this.limits.maxDiscardBody) {
        this.finish();
        return false;
      }
      if (ex.bodyDone) this.ex = undefined;
      return true;
    }
    for (const p of pieces) {
      if (ex.committed) this.sendUp(p);
      else {
        ex.held.push(Buffer.from(p));
        ex.heldBytes += p.length;
      }
    }
    if (!ex.committed && (ex.bodyDone || ex.heldBytes > this.limits.maxBufferedBody)) this.commit(ex);
    return ex.bodyDone || this.inBuf.length > 0;
  }

  private commit(ex: Exchange): void {
    if (ex.committed) return;
    ex.committed = true;
    this.ensureUpstream();
    // Head and held body in one write (one segment for a small request), without a copy when it is the head alone.
    this.sendUp(ex.held.length === 1 ? (ex.held[0] as Buffer) : Buffer.concat(ex.held));
    ex.held = [];
  }

  private sendUp(b: Buffer): void {
    const up = this.upstream;
    if (!up || b.length === 0) return;
    if (!up.write(b)) {
      this.client.pause();
      up.onceDrain(() => this.client.resume());
    }
  }

  /** The upstream connection (kept alive across requests); a new one once the last is gone. */
  private ensureUpstream(): void {
    if (this.upstream) return;
    const { host, port } = this.info.originalDst;
    const sock = this.deps.connectUpstream(host, port);
    sock.setNoDelay(true);
    // The events name the connection they came from: a late event of a replaced one is ignored.
    let up: ByteConn | undefined;
    const ev: ConnEvents = {
      data: (d) => this.guarded(() => this.onUpstreamData(up, d)),
      end: () => this.onUpstreamGone(up),
      gone: () => this.onUpstreamGone(up),
    };
    const io = proxyIo(this.deps.io);
    this.upstream = up = (io ? nativeUpstream(sock, ev, io) : undefined) ?? streamConn(sock, ev);
    up.idle(this.limits.idleTimeoutMs, ev.gone);
  }

  private onUpstreamData(up: ByteConn | undefined, d: Buffer): void {
    const ex = this.ex;
    if (this.closed || up === undefined || up !== this.upstream) return;
    if (!ex || !ex.committed) return this.destroy(); // bytes nobody asked for
    const r = ex.reader.push(d);
    if ("error" in r) return this.upstreamFailed(ex, r.error);
    // One write per upstream read: split writes of head and body would meet Nagle and delayed ACKs.
    // A response read whole is one uncopied slice of the read (ResponseReader.push).
    const out = r.forward.length === 1 ? (r.forward[0] as Buffer) : Buffer.concat(r.forward);
    if (out.length > 0 && !this.client.write(out)) {
      up.pause();
      this.client.onceDrain(() => up.resume());
    }
    if (r.done) this.responseDone(ex, r.status ?? 0, r.close || r.extra > 0);
  }

  private onUpstreamGone(up: ByteConn | undefined): void {
    if (up === undefined || up !== this.upstream) return;
    this.upstream = undefined;
    up.destroy();
    const ex = this.ex;
    if (this.closed || !ex || !ex.committed) return;
    if (ex.reader.endOfInput()) return this.responseDone(ex, 0, true);
    this.upstreamFailed(ex, "upstream closed before the response ended");
  }

  private upstreamFailed(ex: Exchange, reason: string): void {
    this.emit(ex, "error", 502, reason);
    if (!ex.reader.started) this.client.write(badGateway());
    this.finish();
  }

  private responseDone(ex: Exchange, status: number, upstreamClose: boolean): void {
    const e = this.event(ex, "forwarded", status, undefined, true);
    if (ex.rule !== undefined) e.rule = ex.rule;
    if (ex.actions.length > 0) e.headerActions = ex.actions;
    this.deps.sink(e);
    this.ex = undefined;
    if (upstreamClose || ex.head.close || !ex.bodyDone) return this.finish();
    this.client.resume();
    this.process();
  }

  private badRequest(reason: string, ex: Exchange | undefined): void {
    this.deps.sink(this.event(ex, "error", 400, reason, false));
    if (ex?.committed) this.upstream?.destroy();
    this.client.write(badRequest());
    this.finish();
  }

  private emit(ex: Exchange, verdict: L7Verdict, status: number, reason: string): void {
    this.deps.sink(this.event(ex, verdict, status, reason, true));
  }

  /** The flow event, built field by field (one object per request). */
  private event(
    ex: Exchange | undefined,
    verdict: L7Verdict,
    status: number | undefined,
    reason: string | undefined,
    timed: boolean,
  ): Mutable<L7Event> {
    const i = this.info;
    const e: Mutable<L7Event> = {
      type: "http",
      verdict,
      srcIdentity: i.srcIdentity,
      dstIdentity: i.dstIdentity,
      endpoint: i.endpoint,
      direction: i.direction,
    };
    if (ex) {
      e.method = ex.head.method;
      e.url = `${this.deps.scheme ?? "http"}://${ex.head.host ?? ""}${ex.path}`;
      const traceId = traceIdOfFields(ex.head.headers);
      if (traceId !== undefined) e.traceId = traceId;
      if (timed) e.latencyMs = Math.round((performance.now() - ex.started) * 1000) / 1000;
    }
    if (status !== undefined) e.status = status;
    if (reason !== undefined) e.reason = reason;
    return e;
  }

  /** Ends the client side after what was written, then lingers briefly so the peer reads it. */
  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.upstream?.destroy();
    this.client.endAndLinger(2000);
  }

  private reset(reason: string): void {
    this.deps.sink(this.event(this.ex, "error", undefined, reason, false));
    this.closed = true;
    this.upstream?.destroy();
    this.client.reset();
  }

  private destroy(): void {
    this.closed = true;
    this.upstream?.destroy();
    this.client.destroy();
  }
}
