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
 * policy knows it (an answer whose addresses the agent already enforces goes
 * at once: `onAnswer` returns undefined). Hostile input never throws out of here: short or
 * non-query packets are dropped, malformed queries get FORMERR, malformed
 * answers SERVFAIL; each is counted in `stats`. A query is one object
 * (exchange.ts) whose methods are its steps, with no promise or timer of its
 * own: upstream and onAnswer deadlines each share one timer (deadlines.ts);
 * the DNS rules' verdict per (policy, name) is remembered (verdicts.ts).
 * UDP sockets (the listener and the upstream pool's) go through the native
 * addon when it is built (native-io.ts: the datagrams that are ready read
 * with one recvmmsg, those of one turn sent with one sendmmsg), else through
 * dgram (`io: "dgram"`, `MEMBRANE_PROXY_IO=stream`); listener.ts holds both.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import { guardSink, type ConnectionInfo, type L7PolicyLookup, type L7Proto, type L7Sink } from "../types.js";
import { TimeoutQueue } from "../deadlines.js";
import {
  DnsExchange,
  type DnsProxyStats,
  type ExchangeContext,
  type Reply,
  type Source,
} from "./exchange.js";
import { ownListeners, type OwnListener } from "../own-listeners.js";
import { listenUdp, type UdpListener } from "./listener.js";
import { serveTcpQueries } from "./tcp.js";
import { UdpUpstreamPool } from "./udp-pool.js";
import type { Upstream } from "./upstream.js";
import { DnsVerdicts } from "./verdicts.js";

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
    src: Source,
    proto: L7Proto,
  ) => ConnectionInfo | undefined | Promise<ConnectionInfo | undefined>;
  /**
   * Tells the agent an answer's addresses: the promise settles once the kernel enforces them (the
   * answer is held until then); undefined: it already does, the answer goes at once.
   */
  readonly onAnswer: (endpoint: string, name: string, ips: readonly string[], ttl: number) => Promise<void> | undefined; // prettier-ignore
  readonly sink: L7Sink;
  readonly limits?: Partial<DnsProxyLimits>;
  /**
   * The UDP sockets' path (listener and upstream): "native" (recvmmsg/sendmmsg, native-io.ts;
   * the default when the addon is built) or "dgram"; default from `MEMBRANE_PROXY_IO`
   * ("stream": dgram).
   */
  readonly io?: "native" | "dgram";
}

export type { DnsProxyStats };

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
  private readonly verdicts = new DnsVerdicts();
  private udp: UdpListener | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();
  private inflight = 0;
  private pool: UdpUpstreamPool;
  private answerDeadlines: TimeoutQueue;
  /** Whether an address and port is this proxy's own listener (read once in start(), not per query). */
  private isListener: OwnListener = () => false;

  /** What each query's DnsExchange uses: the proxy's parts (pool and deadlines read live: stop() renews them). */
  private readonly context: ExchangeContext;

  constructor(private readonly params: DnsProxyParams) {
    this.limits = { ...DEFAULT_DNS_LIMITS, ...params.limits };
    this.sink = guardSink(params.sink);
    this.pool = this.newPool();
    this.answerDeadlines = new TimeoutQueue(this.limits.answerTimeoutMs, (e) =>
      this.internalError("deadline", e),
    );
    this.context = {
      stats: this.stats,
      upstreamTimeoutMs: this.limits.upstreamTimeoutMs,
      answerTimeoutMs: this.limits.answerTimeoutMs,
      upstream: params.upstream,
      lookup: params.lookup,
      identify: params.identify,
      onAnswer: params.onAnswer,
      sink: this.sink,
      verdicts: this.verdicts,
      isListener: (host, port) => this.isListener(host, port),
      pool: () => this.pool,
      answerDeadlines: () => this.answerDeadlines,
      internalError: (where, e) => this.internalError(where, e),
    };
  }

  private newPool(): UdpUpstreamPool {
    return new UdpUpstreamPool({
      timeoutMs: this.limits.upstreamTimeoutMs,
      ...(this.params.io !== undefined ? { io: this.params.io } : {}),
      onSocketError: (e) => this.internalError("upstream socket", e),
    });
  }

  async start(): Promise<{ udpPort: number; tcpPort: number }> {
    const host = this.params.listen?.host ?? "127.0.0.1";
    this.udp = await listenUdp(
      host,
      this.params.listen?.udpPort ?? 0,
      this.limits.maxUdpQuery,
      this.params.io,
      {
        message: (m, src) => this.onDatagram(m, src),
        oversized: () => this.stats.dropped++,
        error: (where, e) => this.internalError(where, e),
      },
    );
    const tcp = net.createServer((s) => this.onTcp(s));
    try {
      await new Promise<void>((res, rej) => {
        tcp.once("error", rej);
        tcp.listen(this.params.listen?.tcpPort ?? 0, host, () => res());
      });
    } catch (e) {
      // Not half started: the UDP listener goes too (its port free for the next try).
      await this.udp.close();
      this.udp = undefined;
      throw e;
    }
    this.tcp = tcp;
    const { udpPort, tcpPort } = this.ports();
    this.isListener = ownListeners([host], [udpPort, tcpPort]);
    return this.ports();
  }

  ports(): { udpPort: number; tcpPort: number } {
    return {
      udpPort: this.udp ? this.udp.port() : 0,
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
    if (udp) await udp.close();
    if (tcp) await new Promise<void>((r) => tcp.close(() => r()));
  }

  /**
   * Once started: why UDP queries come without their packet mark (so every one asks conntrack), or
   * undefined when they carry it (see listener.ts).
   */
  get noPacketMarks(): string | undefined {
    return this.udp?.noMarks;
  }

  /** The UDP path in use ("native" or "dgram"), once started: for tests and diagnostics. */
  get udpPath(): "native" | "dgram" | undefined {
    return this.udp?.path;
  }

  /** A datagram no longer than maxUdpQuery (the listener drops longer ones: `oversized`). */
  private onDatagram(msg: Buffer, src: Source): void {
    const udp = this.udp;
    if (!udp || this.inflight >= this.limits.maxInflight) {
      this.stats.dropped++;
      return;
    }
    this.inflight++;
    this.answer(msg, src, "UDP", (reply) => {
      this.inflight--;
      if (reply && this.udp === udp) udp.reply(reply, src);
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

  /** Calls `reply` exactly once: the reply for one query, or undefined to stay silent (exchange.ts). */
  private answer(msg: Buffer, src: Source, proto: L7Proto, reply: Reply): void {
    new DnsExchange(this.context, msg, src, proto, reply).run();
  }

  private internalError(where: string, e: unknown): void {
    this.stats.internalErrors++;
    this.lastInternalError = `${where}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  }
}
