/**
 * One allowed request: a client stream relayed to one upstream stream.
 *
 *   client stream --headers (normalised :path)--> upstream stream
 *                 --DATA (content-length checked), trailers-->
 *                 <--headers, DATA, trailers (backpressure both ways)--
 *   RST_STREAM from either side resets the other with the same code.
 *
 * A body with a declared content-length up to `maxBufferedBody` is held
 * until it is complete and its length verified, so a request whose framing
 * is broken reaches upstream not at all; longer bodies are streamed and a
 * framing error then resets the upstream stream (upstream never sees the
 * request end). Requests without content-length are streamed at once (gRPC
 * streaming calls need it); END_STREAM delimits them, there is nothing to
 * disagree with.
 *
 * A time limit (`limitMs`, the gateway's route timeouts) passed before the
 * response ended: the upstream stream is cancelled (RST_STREAM CANCEL; its
 * session goes on), and the client gets 504 when no head was sent yet, a
 * reset stream (CANCEL) after it.
 */
import {
  constants,
  type ClientHttp2Session,
  type ClientHttp2Stream,
  type OutgoingHttpHeaders,
  type ServerHttp2Stream,
} from "node:http2";
import type { L7Verdict } from "../types.js";
import { forwardableFields, onHeaderEvent, type H2Request } from "./headers.js";
import { BAD_GATEWAY_BODY, h2CodeName, localReply } from "./replies.js";

const {
  NGHTTP2_CANCEL,
  NGHTTP2_INTERNAL_ERROR,
  NGHTTP2_NO_ERROR,
  NGHTTP2_PROTOCOL_ERROR,
  NGHTTP2_FLAG_END_STREAM,
} = constants;

export interface ExchangeOutcome {
  readonly verdict: L7Verdict;
  readonly status?: number;
  readonly reason?: string;
}

export interface ExchangeParams {
  readonly down: ServerHttp2Stream;
  readonly req: H2Request;
  /** The normalised path: judged and forwarded. */
  readonly path: string;
  /** The request ended with its headers (no body). */
  readonly endStream: boolean;
  readonly maxBufferedBody: number;
  /** The connection's upstream session (created on first use); may throw. */
  readonly upstream: () => ClientHttp2Session;
  /** Called once, when the client stream has closed. */
  readonly done: (o: ExchangeOutcome) => void;
  /** Rewrites the response head before it is sent on (the gateway's ResponseHeaderModifier). */
  readonly responseHeaders?: (h: OutgoingHttpHeaders) => OutgoingHttpHeaders;
  /** The time the exchange may take, ms from start() (the gateway's route timeouts); absent: none. */
  readonly limitMs?: number;
}

const EXPIRED = "the route's timeouts were exceeded";

const FRAMING = "content-length disagrees with the DATA received";

export class H2Exchange {
  private up: ClientHttp2Stream | undefined;
  private upEnded = false;
  private held: Buffer[] = [];
  private received = 0;
  private requestEnded = false;
  private reqTrailers: OutgoingHttpHeaders | undefined;
  private resTrailers: OutgoingHttpHeaders | undefined;
  private status: number | undefined;
  private responseEnded = false;
  private upstreamBroken = false;
  private failure: { reason: string; status?: number } | undefined;
  private finished = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly p: ExchangeParams) {}

  start(): void {
    const d = this.p.down;
    d.on("data", (c: Buffer) => this.onRequestData(c));
    onHeaderEvent(d, "trailers", 0, (_f, raw) => (this.reqTrailers = forwardableFields(raw)));
    d.on("end", () => this.onRequestEnd());
    d.on("wantTrailers", () => {
      if (!d.destroyed) d.sendTrailers(this.resTrailers ?? {});
    });
    d.on("close", () => this.onDownClose());
    if (this.p.limitMs !== undefined) this.timer = setTimeout(() => this.expire(), this.p.limitMs);
    const cl = this.p.req.contentLength;
    if (this.p.endStream) {
      if (cl !== undefined && cl !== 0) return this.framingError();
      return this.commit();
    }
    const hold =
      cl !== undefined && cl <= this.p.maxBufferedBody && this.p.req.headers["expect"] !== "100-continue";
    if (!hold) this.commit();
  }

  private onRequestData(c: Buffer): void {
    if (this.finished || this.failure) return;
    this.received += c.length;
    const cl = this.p.req.contentLength;
    if (cl !== undefined && this.received > cl) return this.framingError();
    const up = this.up;
    if (!up) {
      this.held.push(c);
      return;
    }
    if (!up.writable) return; // upstream has finished with this request: the rest is dropped
    if (!up.write(c)) {
      this.p.down.pause();
      up.once("drain", () => this.p.down.resume());
    }
  }

  private onRequestEnd(): void {
    if (this.finished || this.failure) return;
    // Node ends the readable side of a reset stream too: that is a truncated request, not its end.
    // (A closed stream whose response is still pending can only have been reset.)
    if (this.p.down.closed && !this.responseEnded) return;
    const cl = this.p.req.contentLength;
    if (cl !== undefined && this.received !== cl) return this.framingError();
    this.requestEnded = true;
    if (!this.up) return this.commit();
    this.endUpstreamRequest();
  }

  private endUpstreamRequest(): void {
    const up = this.up;
    if (!up || this.upEnded) return;
    this.upEnded = true;
    if (up.writable) up.end();
  }

  /** Opens the upstream stream and sends what was held. */
  private commit(): void {
    const { req, path, endStream } = this.p;
    const headers: OutgoingHttpHeaders = {
      ...req.headers,
      ":method": req.method,
      ":path": path,
      ":scheme": req.scheme,
      ":authority": req.authority,
    };
    let up: ClientHttp2Stream;
    try {
      up = this.p.upstream().request(headers, endStream ? { endStream: true } : { waitForTrailers: true });
    } catch (e) {
      return this.badGateway(`upstream unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.up = up;
    this.upEnded = endStream;
    up.on("error", (e: NodeJS.ErrnoException) => {
      // Anything but the peer's RST_STREAM: the session died under the stream
      // (connect refused, socket reset, GOAWAY with an error).
      if (e.code !== "ERR_HTTP2_STREAM_ERROR") this.upstreamBroken = true;
    });
    up.on("wantTrailers", () => {
      if (!up.destroyed) up.sendTrailers(this.reqTrailers ?? {});
    });
    onHeaderEvent(up, "headers", 0, (_f, raw) => this.onInformational(raw));
    onHeaderEvent(up, "response", 0, (flags, raw) => this.onResponse(flags, raw));
    up.on("data", (c: Buffer) => this.onResponseData(up, c));
    onHeaderEvent(up, "trailers", 0, (_f, raw) => (this.resTrailers = forwardableFields(raw)));
    up.on("end", () => this.onResponseEnd());
    up.on("close", () => this.onUpClose(up));
    for (const c of this.held) up.write(c);
    this.held = [];
    if (this.requestEnded) this.endUpstreamRequest();
  }

  /** 1xx other than 101 (which HTTP/2 forbids): passed on as they come. */
  private onInformational(raw: readonly string[]): void {
    const h = forwardableFields(raw);
    const s = Number(h[":status"]);
    const d = this.p.down;
    if (s >= 100 && s < 200 && s !== 101 && !d.headersSent && !d.destroyed) d.additionalHeaders(h);
  }

  private onResponse(flags: number, raw: readonly string[]): void {
    const d = this.p.down;
    if (d.destroyed || d.headersSent) return;
    const fields = forwardableFields(raw);
    const h = this.p.responseHeaders ? this.p.responseHeaders(fields) : fields;
    this.status = Number(h[":status"]);
    const end = (flags & NGHTTP2_FLAG_END_STREAM) !== 0;
    try {
      d.respond(h, end ? { endStream: true } : { waitForTrailers: true });
    } catch (e) {
      this.failure = { reason: `invalid upstream response: ${e instanceof Error ? e.message : String(e)}` };
      this.up?.close(NGHTTP2_CANCEL);
      d.close(NGHTTP2_INTERNAL_ERROR);
      return;
    }
    if (end) this.responseEnded = true;
  }

  private onResponseData(up: ClientHttp2Stream, c: Buffer): void {
    const d = this.p.down;
    if (!d.headersSent || !d.writable) return;
    if (!d.write(c)) {
      up.pause();
      d.once("drain", () => up.resume());
    }
  }

  private onResponseEnd(): void {
    const d = this.p.down;
    if (this.responseEnded || this.failure || !d.headersSent || d.destroyed) return;
    this.responseEnded = true;
    d.end();
  }

  private onUpClose(up: ClientHttp2Stream): void {
    if (this.finished || this.responseEnded || this.failure) return;
    const d = this.p.down;
    const code = up.rstCode ?? NGHTTP2_INTERNAL_ERROR;
    const sent = code === NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code;
    if (!d.headersSent && this.upstreamBroken) return this.badGateway("upstream connection failed");
    this.failure = {
      reason: `upstream reset the stream (${h2CodeName(code)})`,
      ...(this.status !== undefined ? { status: this.status } : {}),
    };
    d.close(sent);
  }

  private badGateway(reason: string): void {
    this.failure = { reason, status: 502 };
    const { req, down } = this.p;
    localReply(down, { grpc: req.grpc, head: req.method === "HEAD", status: 502, body: BAD_GATEWAY_BODY });
    down.resume();
  }

  private framingError(): void {
    this.failure = { reason: FRAMING };
    this.held = [];
    this.up?.close(NGHTTP2_CANCEL);
    this.p.down.close(NGHTTP2_PROTOCOL_ERROR);
  }

  private expire(): void {
    if (this.finished || this.responseEnded || this.failure) return;
    const d = this.p.down;
    this.held = [];
    this.failure = { reason: EXPIRED, status: d.headersSent ? (this.status ?? 504) : 504 };
    this.up?.close(NGHTTP2_CANCEL);
    if (d.headersSent) return void d.close(NGHTTP2_CANCEL);
    const { req } = this.p;
    localReply(d, { grpc: req.grpc, head: req.method === "HEAD", status: 504, body: "Gateway Timeout\r\n" });
    d.resume();
  }

  private onDownClose(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.timer);
    const d = this.p.down;
    const code = d.rstCode ?? NGHTTP2_NO_ERROR;
    const up = this.up;
    if (up && !up.closed && !up.destroyed) up.close(this.responseEnded ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    const status = this.status !== undefined ? { status: this.status } : {};
    // nghttp2 checks content-length itself and resets with PROTOCOL_ERROR, before our DATA count sees it.
    const cl = this.p.req.contentLength;
    if (
      !this.failure &&
      code === NGHTTP2_PROTOCOL_ERROR &&
      cl !== undefined &&
      !this.requestEnded &&
      this.received !== cl
    )
      this.failure = { reason: FRAMING };
    if (this.failure) return this.p.done({ verdict: "error", ...this.failure });
    if (!up)
      return this.p.done({
        verdict: "error",
        reason: `stream reset before the request was forwarded (${h2CodeName(code)})`,
      });
    if (code !== NGHTTP2_NO_ERROR && !this.responseEnded)
      return this.p.done({
        verdict: "forwarded",
        ...status,
        reason: `client reset the stream (${h2CodeName(code)})`,
      });
    this.p.done({ verdict: "forwarded", ...status });
  }
}
