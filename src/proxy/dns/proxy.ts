/**
 * The DNS proxy: enforces DNS rules on query names and tells the agent
 * which addresses a name resolved to before the client may use them.
 *
 *   client --UDP/TCP query--> parseQuery --identify + lookup--> REFUSED
 *                                               | allowed
 *                                               v
 *                      upstream resolver (UDP over udp-pool.ts's long-lived sockets,
 *                                               |  TCP on truncation; TCP for TCP)
 *                      readAnswer --A/AAAA--> onAnswer(endpoint, name, ips, ttl)
 *                                               | resolved          | rejected / too slow
 *                                               v                   v
 *                                     answer to client          SERVFAIL (fail closed)
 *
 * The answer is held until `onAnswer` resolved: that is where the agent
 * programs the kernel, so the client can never connect to an address before
 * policy knows it. Hostile input never throws out of here: short or
 * non-query packets are dropped, malformed queries get FORMERR, malformed
 * answers SERVFAIL; each is counted in `stats`. A query is a chain of
 * callbacks (no promise or timer of its own): upstream and onAnswer
 * deadlines each share one timer (deadlines.ts).
 */
import dgram from "node:dgram";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { compileDnsRules } from "../../policy/l7/fqdn.js";
import type { L7Spec } from "../../policy/mapstate.js";
import {
  guardSink,
  l7Admits,
  l7Parser,
  lookupKey,
  type ConnectionInfo,
  type L7Event,
  type L7PolicyLookup,
  type L7Proto,
  type L7Sink,
} from "../types.js";
import { TimeoutQueue } from "../deadlines.js";
import {
  buildReply,
  parseQuery,
  qtypeName,
  RCODE,
  RCODE_NAMES,
  readAnswer,
  truncatedCopy,
  type Query,
} from "./message.js";
import { serveTcpQueries } from "./tcp.js";
import { UdpUpstreamPool } from "./udp-pool.js";
import { exchangeTcp, type Upstream } from "./upstream.js";

type Source = { readonly address: string; readonly port: number };
/** The flow fields every event of one query carries. */
type QueryEvent = Omit<L7Event, "verdict">;

export interface DnsProxyLimits {
  readonly maxUdpQuery: number;
  readonly maxTcpQuery: number;
  readonly upstreamTimeoutMs: number;
  /** Longest wait for `onAnswer` before the client gets SERVFAIL. */
  readonly answerTimeoutMs: number;
  readonly maxInflight: number;
  readonly maxTcpPipelined: number;
  readonly tcpIdleMs: number;
}

export const DEFAULT_DNS_LIMITS: DnsProxyLimits = {
  maxUdpQuery: 4096,
  maxTcpQuery: 4096,
  upstreamTimeoutMs: 2000,
  // The agent's enforce (recompute + one nft transaction) must fit; clients retry after ~5 s.
  answerTimeoutMs: 3000,
  maxInflight: 1024,
  maxTcpPipelined: 16,
  tcpIdleMs: 10_000,
};

export interface DnsProxyParams {
  /** Defaults: 127.0.0.1, port 0 (random) for both. */
  readonly listen?: { readonly host?: string; readonly udpPort?: number; readonly tcpPort?: number };
  /** The resolver; absent = the query's original destination (`identify`'s originalDst), as Cilium does. */
  readonly upstream?: Upstream;
  readonly lookup: L7PolicyLookup;
  /** Who sent a query (from the kernel redirect: conntrack); undefined => REFUSED. */
  readonly identify: (
    src: { address: string; port: number },
    proto: L7Proto,
  ) => ConnectionInfo | undefined | Promise<ConnectionInfo | undefined>;
  readonly onAnswer: (endpoint: string, name: string, ips: readonly string[], ttl: number) => Promise<void>;
  readonly sink: L7Sink;
  readonly limits?: Partial<DnsProxyLimits>;
}

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

export class DnsProxy {
  readonly stats: DnsProxyStats = {
    queries: 0,
    forwarded: 0,
    refused: 0,
    formerr: 0,
    dropped: 0,
    servfail: 0,
    badAnswers: 0,
    upstreamErrors: 0,
    onAnswerFailures: 0,
    internalErrors: 0,
  };
  /** What the last internal error was (for logs and tests; internal errors are bugs, never input). */
  lastInternalError: string | undefined;
  private readonly limits: DnsProxyLimits;
  private readonly sink: L7Sink;
  private readonly matchers = new WeakMap<L7Spec, (name: string) => boolean>();
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private inflight = 0;
  private pool: UdpUpstreamPool;
  private answerDeadlines: TimeoutQueue;

  constructor(private readonly params: DnsProxyParams) {
    this.limits = { ...DEFAULT_DNS_LIMITS, ...params.limits };
    this.sink = guardSink(params.sink);
    this.pool = this.newPool();
    this.answerDeadlines = new TimeoutQueue(this.limits.answerTimeoutMs, (e) =>
      this.internalError("deadline", e),
    );
  }

  private newPool(): UdpUpstreamPool {
    return new UdpUpstreamPool({
      timeoutMs: this.limits.upstreamTimeoutMs,
      onSocketError: (e) => this.internalError("upstream socket", e),
    });
  }

  async start(): Promise<{ udpPort: number; tcpPort: number }> {
    const host = this.params.listen?.host ?? "127.0.0.1";
    const udp = dgram.createSocket(net.isIPv6(host) ? "udp6" : "udp4");
    this.udp = udp;
    udp.on("message", (m, rinfo) => this.onDatagram(udp, m, rinfo));
    udp.on("error", (e) => this.internalError("udp socket", e));
    await new Promise<void>((res, rej) => {
      udp.once("error", rej);
      udp.bind(this.params.listen?.udpPort ?? 0, host, () => res());
    });
    const tcp = net.createServer((s) => this.onTcp(s));
    this.tcp = tcp;
    await new Promise<void>((res, rej) => {
      tcp.once("error", rej);
      tcp.listen(this.params.listen?.tcpPort ?? 0, host, () => res());
    });
    return this.ports();
  }

  ports(): { udpPort: number; tcpPort: number } {
    return {
      udpPort: this.udp ? this.udp.address().port : 0,
      tcpPort: this.tcp ? (this.tcp.address() as AddressInfo).port : 0,
    };
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy();
    // Outstanding queries fail now; a later start() gets fresh sockets and deadlines.
    this.pool.close();
    this.answerDeadlines.stop();
    this.pool = this.newPool();
    this.answerDeadlines = new TimeoutQueue(this.limits.answerTimeoutMs, (e) =>
      this.internalError("deadline", e),
    );
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    if (udp) await new Promise<void>((r) => udp.close(() => r()));
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
  }

  private onDatagram(udp: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length > this.limits.maxUdpQuery || this.inflight >= this.limits.maxInflight) {
      this.stats.dropped++;
      return;
    }
    this.inflight++;
    this.answer(msg, rinfo, "UDP", (reply) => {
      this.inflight--;
      if (!reply || this.udp !== udp) return;
      try {
        // No completion callback: Node then skips a call back into JS per datagram, and a failed
        // send is dropped silently, as the callback did (the client retries).
        udp.send(reply, rinfo.port, rinfo.address);
      } catch (e) {
        this.internalError("udp send", e);
      }
    });
  }

  private onTcp(sock: net.Socket): void {
    this.conns.add(sock);
    sock.on("close", () => this.conns.delete(sock));
    serveTcpQueries(
      sock,
      this.limits,
      () => this.stats.dropped++,
      (msg, src, reply) => this.answer(msg, src, "TCP", reply),
    );
  }

  /**
   * Calls `reply` exactly once: the reply for one query, or undefined to stay
   * silent. Callbacks all the way (no promise, no timer per query): the
   * upstream's answers and the onAnswer deadlines share one timer each.
   */
  private answer(msg: Buffer, src: Source, proto: L7Proto, reply: (b: Buffer | undefined) => void): void {
    let done = false;
    const once = (b: Buffer | undefined): void => {
      if (done) return;
      done = true;
      reply(b);
    };
    const guard = (where: string, f: () => void): void => {
      try {
        f();
      } catch (e) {
        this.internalError(where, e);
        once(undefined);
      }
    };
    guard("answer", () => {
      this.stats.queries++;
      const info = this.params.identify(src, proto);
      if (!(info instanceof Promise)) return this.judge(msg, src, proto, info, once, guard);
      info.then(
        (i) => guard("answer", () => this.judge(msg, src, proto, i, once, guard)),
        (e: unknown) =>
          guard("identify", () => {
            throw e;
          }),
      );
    });
  }

  private internalError(where: string, e: unknown): void {
    this.stats.internalErrors++;
    this.lastInternalError = `${where}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  }

  private judge(
    msg: Buffer,
    src: Source,
    proto: L7Proto,
    info: ConnectionInfo | undefined,
    reply: (b: Buffer | undefined) => void,
    guard: (where: string, f: () => void) => void,
  ): void {
    const base = {
      type: "dns" as const,
      srcIdentity: info?.srcIdentity ?? 0,
      dstIdentity: info?.dstIdentity ?? 0,
      endpoint: info?.endpoint ?? "",
      direction: info?.direction ?? ("egress" as const),
      client: { address: src.address, port: src.port },
      transport: proto,
      ...(info ? { server: { address: info.originalDst.host, port: info.originalDst.port } } : {}),
    };
    const r = parseQuery(msg);
    if (r.kind === "drop") {
      this.stats.dropped++;
      return reply(undefined);
    }
    if (r.kind === "reply") {
      this.stats.formerr++;
      this.sink({ ...base, verdict: "error", rcode: RCODE_NAMES[r.rcode] ?? "", reason: r.reason });
      return reply(buildReply(r.partial, r.rcode));
    }
    const q = r.query;
    const ev: QueryEvent = { ...base, query: q.name, qtype: qtypeName(q.qtype) };
    const policy = info ? this.params.lookup.forConnection(lookupKey(info)) : undefined;
    if (!info || !policy || !l7Parser(policy, "dns")) {
      this.stats.refused++;
      this.sink({ ...ev, verdict: "error", rcode: "REFUSED", reason: "no DNS policy for this client" });
      return reply(buildReply(q, RCODE.REFUSED));
    }
    if (!l7Admits(policy, (spec) => this.matcher(spec)(q.name))) {
      this.stats.refused++;
      this.sink({ ...ev, verdict: "denied", rcode: "REFUSED", reason: "no DNS rule matched" });
      return reply(buildReply(q, RCODE.REFUSED));
    }
    const servfail = (reason: string): void => {
      this.stats.servfail++;
      this.sink({ ...ev, verdict: "error", rcode: "SERVFAIL", reason });
      reply(buildReply(q, RCODE.SERVFAIL));
    };
    const upstreamFailed = (e: unknown): void => {
      this.stats.upstreamErrors++;
      servfail(`upstream: ${e instanceof Error ? e.message : "failed"}`);
    };
    const up = this.params.upstream ?? { host: info.originalDst.host, port: info.originalDst.port };
    const t = this.limits.upstreamTimeoutMs;
    const answered = (first: Buffer, full: Buffer): void =>
      guard("answer", () => this.release(q, info, ev, first, full, proto, reply, servfail, guard));
    const tcpFailed = (e: unknown): void => guard("upstream", () => upstreamFailed(e));
    if (proto === "TCP") {
      exchangeTcp(up, msg, t).then((a) => answered(a, a), tcpFailed);
      return;
    }
    this.pool.exchange(up, msg, q.id, (err, a) =>
      guard("upstream", () => {
        if (err || !a) return upstreamFailed(err);
        // Not truncated (the common case): read once, in release(). Truncated and readable: TCP.
        if (!(a.readUInt16BE(2) & 0x0200) || !readAnswer(a, q).ok) return answered(a, a);
        // Truncated: the whole answer over TCP. The client gets it if it fits
        // its buffer, else the truncated one (and retries over TCP).
        exchangeTcp(up, msg, t).then(
          (full) => answered(full.length <= q.udpSize ? full : a, full),
          tcpFailed,
        );
      }),
    );
  }

  /** Checks the answer, tells the agent its addresses, and only then replies (SERVFAIL if the agent fails or is late). */
  private release(
    q: Query,
    info: ConnectionInfo,
    ev: QueryEvent,
    first: Buffer,
    full: Buffer,
    proto: L7Proto,
    reply: (b: Buffer | undefined) => void,
    servfail: (reason: string) => void,
    guard: (where: string, f: () => void) => void,
  ): void {
    const a = readAnswer(full, q);
    if (!a.ok || (first !== full && !readAnswer(first, q).ok)) {
      this.stats.badAnswers++;
      return servfail(a.ok ? "bad truncated answer" : a.reason);
    }
    const deliver = (): void => {
      const out = proto === "UDP" && first.length > q.udpSize ? truncatedCopy(q, first) : first;
      this.stats.forwarded++;
      this.sink({
        ...ev,
        verdict: "forwarded",
        rcode: RCODE_NAMES[a.rcode] ?? `RCODE${a.rcode}`,
        answers: a.ips,
        ...(a.ips.length > 0 ? { ttl: a.ttl } : {}),
        ...(a.cnames.length > 0 ? { cnames: a.cnames } : {}),
        ...(a.rrtypes.length > 0 ? { rrtypes: a.rrtypes } : {}),
      });
      reply(out);
    };
    if (a.ips.length === 0) return deliver();
    let settled = false;
    const failed = (why: string): void => {
      if (settled) return;
      settled = true;
      deadline.cancel();
      this.stats.onAnswerFailures++;
      servfail(`policy update: ${why}`);
    };
    const deadline = this.answerDeadlines.add(() =>
      failed(`not done within ${this.limits.answerTimeoutMs} ms`),
    );
    this.params.onAnswer(info.endpoint, q.name, a.ips, a.ttl).then(
      () =>
        guard("answer", () => {
          if (settled) return;
          settled = true;
          deadline.cancel();
          deliver();
        }),
      (e: unknown) => guard("answer", () => failed(e instanceof Error ? e.message : "failed")),
    );
  }

  private matcher(spec: L7Spec): (name: string) => boolean {
    let m = this.matchers.get(spec);
    if (!m) this.matchers.set(spec, (m = compileDnsRules(spec.dns)));
    return m;
  }
}
