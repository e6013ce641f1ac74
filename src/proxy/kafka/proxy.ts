/**
 * Kafka enforcing proxy core: one client connection in, at most one
 * upstream broker connection (to the original destination, opened at the
 * first allowed request) out.
 *
 *   client frames --parseKafkaRequest--> lookup --kafkaMatches (every stage)--> forward | deniedResponse
 *   upstream frames --correlation id == next expected?--> client (in request order)
 *
 * Kafka clients pipeline requests and match responses by order: every
 * request that expects an answer takes a place in a FIFO (answers.ts). The broker's
 * responses are streamed through as they come (only their 8-byte head is
 * held, to check the correlation id against the FIFO's head: anything else
 * is a broker error or a smuggling attempt, and closes both sides); a denied
 * request's TOPIC_AUTHORIZATION_FAILED answer waits in the FIFO until every
 * earlier answer went out. Denied requests never reach the broker. A denied
 * request kind without an error answer closes the connection once the
 * answers before it are out. ApiVersions answers are lowered to the versions
 * the parser reads (apiversions.ts). Policy is looked up per request, so a
 * change applies to live connections; no policy, a policy for another
 * parser, or an unreadable request closes the connection (fail closed).
 *
 * The caller's server should use `allowHalfOpen: true`, so that a client
 * which half-closes after its requests still receives the answers.
 */
import type { Socket } from "node:net";
import { kafkaMatches, type KafkaRequestLike } from "../../policy/l7/kafka.js";
import {
  guardSink,
  l7Admits,
  policyFor,
  type ConnectionInfo,
  type L7Event,
  type L7LookupResult,
  type L7PolicyLookup,
  type L7Sink,
} from "../types.js";
import { AnswerQueue } from "./answers.js";
import { API_VERSIONS_KEY } from "./apiversions.js";
import { API, DEFAULT_MAX_FRAME_BYTES, parseKafkaRequest, type KafkaRequest } from "./request.js";
import { deniedResponse } from "./response.js";

export interface KafkaProxyLimits {
  /** Largest request frame (size prefix excluded) read from the client. */
  readonly maxRequestBytes: number;
  /** Largest response frame accepted from the broker (streamed, not buffered). */
  readonly maxResponseBytes: number;
  /** ApiVersions responses are held whole to be rewritten: their limit. */
  readonly maxApiVersionsBytes: number;
  /** Requests awaiting an answer before the client is no longer read. */
  readonly maxOutstanding: number;
  readonly idleTimeoutMs: number;
}

export const DEFAULT_KAFKA_LIMITS: KafkaProxyLimits = {
  maxRequestBytes: DEFAULT_MAX_FRAME_BYTES,
  maxResponseBytes: 256 * 1024 * 1024,
  maxApiVersionsBytes: 64 * 1024,
  maxOutstanding: 256,
  idleTimeoutMs: 600_000,
};

export interface KafkaProxyDeps {
  readonly lookup: L7PolicyLookup;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly sink: L7Sink;
  readonly limits?: Partial<KafkaProxyLimits>;
  /** Bytes already read from the client (e.g. while detecting the protocol). */
  readonly head?: Buffer;
}

/** Takes over `client`; returns at once, the connection lives on its events. */
export function handleKafkaConnection(client: Socket, info: ConnectionInfo, deps: KafkaProxyDeps): void {
  new KafkaConnection(client, info, { ...deps, sink: guardSink(deps.sink) }).start();
}

class KafkaConnection {
  private readonly limits: KafkaProxyLimits;
  private readonly answers: AnswerQueue;
  private inBuf: Buffer = Buffer.alloc(0);
  private upstream: Socket | undefined;
  private closed = false;
  private clientEnded = false;
  /** A request closes the connection: read nothing more. */
  private stopReading = false;

  constructor(
    private readonly client: Socket,
    private readonly info: ConnectionInfo,
    private readonly deps: KafkaProxyDeps,
  ) {
    this.limits = { ...DEFAULT_KAFKA_LIMITS, ...deps.limits };
    this.answers = new AnswerQueue(this.limits);
  }

  start(): void {
    const c = this.client;
    c.on("error", () => this.destroy());
    c.on("close", () => this.destroy());
    if (this.policy() === undefined) return this.reset("no Kafka policy for this connection", undefined);
    c.setTimeout(this.limits.idleTimeoutMs, () => this.destroy());
    c.setNoDelay(true);
    c.on("drain", () => this.updateFlow());
    c.on("data", (d: Buffer) => {
      if (this.closed || this.stopReading) return;
      this.inBuf = this.inBuf.length === 0 ? d : Buffer.concat([this.inBuf, d]);
      this.guarded(() => this.process());
    });
    c.on("end", () => {
      this.clientEnded = true;
      this.guarded(() => this.process());
    });
    if (this.deps.head && this.deps.head.length > 0) {
      this.inBuf = this.deps.head;
      this.guarded(() => this.process());
    }
  }

  /** A bug resets this connection, never the process (fail closed). */
  private guarded(f: () => void): void {
    try {
      f();
    } catch (e) {
      if (!this.closed)
        this.reset(`internal error: ${e instanceof Error ? e.message : String(e)}`, undefined);
    }
  }

  private policy(): L7LookupResult | undefined {
    return policyFor(this.deps.lookup, this.info, "kafka");
  }

  private process(): void {
    while (!this.closed && !this.stopReading && this.answers.length < this.limits.maxOutstanding) {
      if (this.inBuf.length === 0) break;
      const r = parseKafkaRequest(this.inBuf, this.limits.maxRequestBytes);
      if (r.kind === "incomplete") break;
      if (r.kind === "error") return this.reset(`malformed request: ${r.reason}`, undefined);
      const frame = this.inBuf.subarray(0, r.length);
      this.inBuf = this.inBuf.subarray(r.length);
      this.judge(r.request, frame);
    }
    if (this.closed) return;
    this.flushLocal();
    if (this.closed) return;
    // A client that has sent its last byte is done once every answer went out.
    if (this.clientEnded && this.answers.length === 0) this.finish();
    this.updateFlow();
  }

  private judge(req: KafkaRequest, frame: Buffer): void {
    const policy = this.policy();
    if (!policy) return this.reset("no Kafka policy for this connection", req);
    const topics = req.topics?.map((t) => t.name);
    const like: KafkaRequestLike = {
      apiKey: req.apiKey,
      apiVersion: req.apiVersion,
      ...(req.clientID !== null ? { clientID: req.clientID } : {}),
      ...(topics ? { topics } : {}),
    };
    if (l7Admits(policy, (spec) => kafkaMatches(spec.kafka, like))) {
      this.ensureUpstream();
      this.sendUp(frame);
      if (!(req.apiKey === API.produce && req.acks === 0)) {
        this.answers.expect(req.correlationId, req.apiKey === API_VERSIONS_KEY ? req.apiVersion : undefined);
      }
      return this.emit(req, { verdict: "forwarded" });
    }
    const answer = deniedResponse(req);
    if (answer) {
      this.answers.deny(answer);
      return this.emit(req, { verdict: "denied", reason: "no Kafka rule matched" });
    }
    this.answers.closeHere();
    this.stopReading = true;
    this.emit(req, {
      verdict: "denied",
      reason: "no Kafka rule matched; no error answer for this request: closed",
    });
  }

  /** Writes our answers now at the head of the queue; a close marker there finishes. */
  private flushLocal(): void {
    const out: Buffer[] = [];
    const close = this.answers.takeLocal(out);
    this.toClient(out);
    if (close) this.finish();
  }

  /** One write per batch: split small writes would meet Nagle and delayed ACKs. */
  private toClient(out: Buffer[]): void {
    if (out.length === 0 || this.closed) return;
    this.client.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
    out.length = 0;
  }

  private sendUp(b: Buffer): void {
    this.upstream?.write(b);
  }

  /** Backpressure both ways: a side that cannot write stops the other from being read. */
  private updateFlow(): void {
    if (this.closed) return;
    const clientFull = this.client.writableNeedDrain;
    const up = this.upstream;
    const hold =
      clientFull ||
      (up?.writableNeedDrain ?? false) ||
      this.stopReading ||
      this.answers.length >= this.limits.maxOutstanding;
    if (hold) this.client.pause();
    else this.client.resume();
    if (up && clientFull) up.pause();
    else up?.resume();
  }

  private ensureUpstream(): void {
    if (this.upstream) return;
    const { host, port } = this.info.originalDst;
    const up = this.deps.connectUpstream(host, port);
    this.upstream = up;
    up.setTimeout(this.limits.idleTimeoutMs, () => up.destroy());
    up.setNoDelay(true);
    up.on("drain", () => this.updateFlow());
    up.on("data", (d: Buffer) => this.guarded(() => this.onUpstreamData(up, d)));
    up.on("end", () => this.onUpstreamGone(up));
    up.on("error", () => this.onUpstreamGone(up));
    up.on("close", () => this.onUpstreamGone(up));
  }

  private onUpstreamData(up: Socket, d: Buffer): void {
    if (this.closed || up !== this.upstream) return;
    const out: Buffer[] = [];
    const r = this.answers.fromBroker(d, out);
    if (typeof r === "object") return this.reset(r.error, undefined);
    this.toClient(out);
    if (r === "close") return this.finish();
    // Answers went out: more requests may be read, a half-closed client may be done.
    this.process();
  }

  private onUpstreamGone(up: Socket): void {
    if (up !== this.upstream) return;
    up.destroy();
    if (this.closed) return;
    const owed = this.answers.brokerOwes();
    if (owed > 0)
      this.deps.sink(this.event(undefined, { reason: `broker closed with ${owed} answers owed` }));
    // The broker went away: the client reconnects, as it would to a broker.
    this.finish();
  }

  private emit(req: KafkaRequest, e: Partial<L7Event>): void {
    this.deps.sink(this.event(req, e));
  }

  private event(req: KafkaRequest | undefined, e: Partial<L7Event>): L7Event {
    const i = this.info;
    return {
      type: "kafka",
      verdict: "error",
      srcIdentity: i.srcIdentity,
      dstIdentity: i.dstIdentity,
      endpoint: i.endpoint,
      direction: i.direction,
      ...(req
        ? {
            apiKey: req.apiKey,
            apiVersion: req.apiVersion,
            correlationId: req.correlationId,
            ...(req.topics ? { topics: req.topics.map((t) => t.name) } : {}),
          }
        : {}),
      ...e,
    };
  }

  /** Ends the client side after what was written, then lingers briefly so the peer reads it. */
  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.upstream?.destroy();
    this.client.end();
    this.client.resume();
    const t = setTimeout(() => this.client.destroy(), 2000);
    t.unref();
    this.client.once("close", () => clearTimeout(t));
  }

  private reset(reason: string, req: KafkaRequest | undefined): void {
    this.deps.sink(this.event(req, { verdict: "error", reason }));
    this.closed = true;
    this.upstream?.destroy();
    this.client.resetAndDestroy();
  }

  private destroy(): void {
    this.closed = true;
    this.upstream?.destroy();
    this.client.destroy();
  }
}
