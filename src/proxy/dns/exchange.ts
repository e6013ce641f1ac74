/**
 * One DNS query through the proxy, from the client's bytes to its reply: an
 * object per query whose methods are the steps (identify, judge, upstream,
 * release), instead of a dozen closures and spread objects per query.
 *
 *   run --identify--> judge --parseQuery + verdict cache--> REFUSED / FORMERR / drop
 *                        | allowed
 *                        v
 *        upstream (UDP pool; TCP for TCP and on truncation) --> release --readAnswer-->
 *        onAnswer (the agent programs the kernel) --> deliver | SERVFAIL (failed or late)
 *                 \--nothing to wait for (the agent already enforces them)--> deliver
 *
 * `reply` is called exactly once: the reply bytes, or undefined to stay
 * silent. Whatever a step throws is an internal error (counted) and ends the
 * query silently; hostile bytes never throw (message.ts returns reasons).
 */
import type { TimeoutQueue, Deadline } from "../deadlines.js";
import {
  lookupKey,
  l7Parser,
  type ConnectionInfo,
  type L7Event,
  type L7PolicyLookup,
  type L7Proto,
  type L7Sink,
} from "../types.js";
import {
  buildReply,
  parseQuery,
  qtypeName,
  RCODE,
  RCODE_NAMES,
  readAnswer,
  truncatedCopy,
  type AnswerResult,
  type Query,
} from "./message.js";
import type { UdpUpstreamPool } from "./udp-pool.js";
import { exchangeTcp, type Upstream } from "./upstream.js";
import type { DnsVerdicts } from "./verdicts.js";

/**
 * Where a query came from; `mark` is the datagram's packet mark when the listener reads it (the
 * native UDP path: the datapath puts the conntrack entry's id there; runtime/dns-origins.ts).
 */
export type Source = { readonly address: string; readonly port: number; readonly mark?: number };
export type Reply = (b: Buffer | undefined) => void;

/** What the DNS proxy counts (its `stats`); a query adds to all but `internalErrors`, which only the proxy counts. */
export interface DnsProxyStats {
  queries: number;
  forwarded: number;
  refused: number;
  formerr: number;
  dropped: number;
  servfail: number;
  badAnswers: number;
  upstreamErrors: number;
  onAnswerFailures: number;
  internalErrors: number;
}

/** The proxy's parts a query uses (proxy.ts). */
export interface ExchangeContext {
  readonly stats: DnsProxyStats;
  readonly upstreamTimeoutMs: number;
  readonly answerTimeoutMs: number;
  readonly upstream: Upstream | undefined;
  readonly lookup: L7PolicyLookup;
  readonly identify: (src: Source, proto: L7Proto) => ConnectionInfo | undefined | Promise<ConnectionInfo | undefined>; // prettier-ignore
  readonly onAnswer: (endpoint: string, name: string, ips: readonly string[], ttl: number) => Promise<void> | undefined; // prettier-ignore
  readonly sink: L7Sink;
  readonly verdicts: DnsVerdicts;
  /** Whether an address and port is this proxy's own listener (a query there was not redirected). */
  isListener(host: string, port: number): boolean;
  /** The current pool and deadline queue (stop() replaces them). */
  pool(): UdpUpstreamPool;
  answerDeadlines(): TimeoutQueue;
  internalError(where: string, e: unknown): void;
}

export class DnsExchange {
  private finished = false;
  private info: ConnectionInfo | undefined;
  private q: Query | undefined;
  /** onAnswer's outcome arrived (or its deadline passed): later ones are ignored. */
  private settled = false;
  private deadline: Deadline | undefined;
  private first: Buffer | undefined;
  private answer: AnswerResult | undefined;

  constructor(
    private readonly c: ExchangeContext,
    private readonly msg: Buffer,
    private readonly src: Source,
    private readonly proto: L7Proto,
    private readonly reply: Reply,
  ) {}

  run(): void {
    try {
      this.c.stats.queries++;
      const info = this.c.identify(this.src, this.proto);
      if (!(info instanceof Promise)) return this.judge(info);
      info.then(
        (i) => this.step("answer", () => this.judge(i)),
        (e: unknown) => this.fail("identify", e),
      );
    } catch (e) {
      this.fail("answer", e);
    }
  }

  private step(where: string, f: () => void): void {
    try {
      f();
    } catch (e) {
      this.fail(where, e);
    }
  }

  private fail(where: string, e: unknown): void {
    this.c.internalError(where, e);
    this.end(undefined);
  }

  private end(b: Buffer | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.reply(b);
  }

  /** The flow event of this query (fields in one order: one object shape for every event). */
  private event(verdict: L7Event["verdict"], rcode: string, reason: string | undefined): L7Event {
    const info = this.info;
    const q = this.q;
    const e: { -readonly [K in keyof L7Event]: L7Event[K] } = {
      type: "dns",
      verdict,
      srcIdentity: info?.srcIdentity ?? 0,
      dstIdentity: info?.dstIdentity ?? 0,
      endpoint: info?.endpoint ?? "",
      direction: info?.direction ?? "egress",
      client: { address: this.src.address, port: this.src.port },
      transport: this.proto,
      rcode,
    };
    if (info) e.server = { address: info.originalDst.host, port: info.originalDst.port };
    if (q) {
      e.query = q.name;
      e.qtype = qtypeName(q.qtype);
    }
    if (reason !== undefined) e.reason = reason;
    return e;
  }

  private judge(info: ConnectionInfo | undefined): void {
    this.info = info;
    const r = parseQuery(this.msg);
    if (r.kind === "drop") {
      this.c.stats.dropped++;
      return this.end(undefined);
    }
    if (r.kind === "reply") {
      this.c.stats.formerr++;
      this.c.sink(this.event("error", RCODE_NAMES[r.rcode] ?? "", r.reason));
      return this.end(buildReply(r.partial, r.rcode));
    }
    const q = r.query;
    this.q = q;
    // Sent to the proxy's own address, not redirected to it: its original destination is the
    // proxy, so forwarding it there would loop (each turn one more conntrack lookup) until the
    // upstream deadline. The proxy serves only queries the datapath redirected.
    if (
      info &&
      this.c.upstream === undefined &&
      this.c.isListener(info.originalDst.host, info.originalDst.port)
    ) {
      this.c.stats.refused++;
      this.c.sink(this.event("error", "REFUSED", "sent to the DNS proxy itself, not redirected to it"));
      return this.end(buildReply(q, RCODE.REFUSED));
    }
    const policy = info ? this.c.lookup.forConnection(lookupKey(info)) : undefined;
    if (!info || !policy || !l7Parser(policy, "dns")) {
      this.c.stats.refused++;
      this.c.sink(this.event("error", "REFUSED", "no DNS policy for this client"));
      return this.end(buildReply(q, RCODE.REFUSED));
    }
    if (!this.c.verdicts.admits(policy, q.name)) {
      this.c.stats.refused++;
      this.c.sink(this.event("denied", "REFUSED", "no DNS rule matched"));
      return this.end(buildReply(q, RCODE.REFUSED));
    }
    if (this.proto === "TCP") return this.viaTcp(undefined);
    this.c
      .pool()
      .exchange(this.upstreamOf(info), this.msg, q.id, (err, a) =>
        this.step("upstream", () => this.fromUdp(err, a)),
      );
  }

  private upstreamOf(info: ConnectionInfo): Upstream {
    return this.c.upstream ?? info.originalDst;
  }

  private fromUdp(err: Error | undefined, a: Buffer | undefined): void {
    if (err || !a) return this.upstreamFailed(err);
    // Not truncated (the common case): read once, in release(). Truncated and readable: TCP.
    if (!(a.readUInt16BE(2) & 0x0200) || !readAnswer(a, this.q as Query).ok) return this.release(a, a);
    this.viaTcp(a);
  }

  /**
   * The whole answer over TCP (a TCP query, or a truncated UDP answer `udp`): the
   * client gets it if it fits its buffer, else the truncated one (and retries over TCP).
   */
  private viaTcp(udp: Buffer | undefined): void {
    const q = this.q as Query;
    exchangeTcp(this.upstreamOf(this.info as ConnectionInfo), this.msg, this.c.upstreamTimeoutMs).then(
      (full) =>
        this.step("answer", () =>
          this.release(udp === undefined || full.length <= q.udpSize ? full : udp, full),
        ),
      (e: unknown) => this.step("upstream", () => this.upstreamFailed(e)),
    );
  }

  private upstreamFailed(e: unknown): void {
    this.c.stats.upstreamErrors++;
    this.servfail(`upstream: ${e instanceof Error ? e.message : "failed"}`);
  }

  private servfail(reason: string): void {
    this.c.stats.servfail++;
    this.c.sink(this.event("error", "SERVFAIL", reason));
    this.end(buildReply(this.q as Query, RCODE.SERVFAIL));
  }

  /** Checks the answer, tells the agent its addresses, and only then replies (SERVFAIL if the agent fails or is late). */
  private release(first: Buffer, full: Buffer): void {
    const q = this.q as Query;
    const a = readAnswer(full, q);
    if (!a.ok || (first !== full && !readAnswer(first, q).ok)) {
      this.c.stats.badAnswers++;
      return this.servfail(a.ok ? "bad truncated answer" : a.reason);
    }
    this.first = first;
    this.answer = a;
    if (a.ips.length === 0) return this.deliver();
    const enforced = this.c.onAnswer((this.info as ConnectionInfo).endpoint, q.name, a.ips, a.ttl);
    // Nothing to wait for: the agent already enforces every address (runtime/dns-answers.ts).
    if (enforced === undefined) return this.deliver();
    this.deadline = this.c
      .answerDeadlines()
      .add(() => this.agentFailed(`not done within ${this.c.answerTimeoutMs} ms`));
    enforced.then(
      () =>
        this.step("answer", () => {
          if (this.settled) return;
          this.settled = true;
          this.deadline?.cancel();
          this.deliver();
        }),
      (e: unknown) => this.step("answer", () => this.agentFailed(e instanceof Error ? e.message : "failed")),
    );
  }

  private agentFailed(why: string): void {
    if (this.settled) return;
    this.settled = true;
    this.deadline?.cancel();
    this.c.stats.onAnswerFailures++;
    this.servfail(`policy update: ${why}`);
  }

  private deliver(): void {
    const q = this.q as Query;
    const a = this.answer as Extract<AnswerResult, { ok: true }>;
    const first = this.first as Buffer;
    const out = this.proto === "UDP" && first.length > q.udpSize ? truncatedCopy(q, first) : first;
    this.c.stats.forwarded++;
    const e = this.event("forwarded", RCODE_NAMES[a.rcode] ?? `RCODE${a.rcode}`, undefined);
    const w = e as { -readonly [K in keyof L7Event]: L7Event[K] };
    w.answers = a.ips;
    if (a.ips.length > 0) w.ttl = a.ttl;
    if (a.cnames.length > 0) w.cnames = a.cnames;
    if (a.rrtypes.length > 0) w.rrtypes = a.rrtypes;
    this.c.sink(e);
    this.end(out);
  }
}
