/**
 * The DNS proxy: enforces DNS rules on query names and tells the agent
 * which addresses a name resolved to before the client may use them.
 *
 *   client --UDP/TCP query--> parseQuery --identify + lookup--> REFUSED
 *                                               | allowed
 *                                               v
 *                      upstream resolver (UDP, TCP on truncation; TCP for TCP)
 *                                               |
 *                      readAnswer --A/AAAA--> onAnswer(endpoint, name, ips, ttl)
 *                                               | resolved          | rejected / too slow
 *                                               v                   v
 *                                     answer to client          SERVFAIL (fail closed)
 *
 * The answer is held until `onAnswer` resolved: that is where the agent
 * programs the kernel, so the client can never connect to an address before
 * policy knows it. Hostile input never throws out of here: short or
 * non-query packets are dropped, malformed queries get FORMERR, malformed
 * answers SERVFAIL; each is counted in `stats`.
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
  type L7PolicyLookup,
  type L7Proto,
  type L7Sink,
} from "../types.js";
import { buildReply, parseQuery, RCODE, RCODE_NAMES, readAnswer, type Query } from "./message.js";
import { exchangeTcp, exchangeUdp, type Upstream } from "./upstream.js";

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

const QTYPES: Readonly<Record<number, string>> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  12: "PTR",
  15: "MX",
  16: "TXT",
  28: "AAAA",
  33: "SRV",
  65: "HTTPS",
  255: "ANY",
};

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

  constructor(private readonly params: DnsProxyParams) {
    this.limits = { ...DEFAULT_DNS_LIMITS, ...params.limits };
    this.sink = guardSink(params.sink);
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
    void this.answer(msg, { address: rinfo.address, port: rinfo.port }, "UDP")
      .then((reply) => {
        if (!reply || this.udp !== udp) return;
        try {
          udp.send(reply, rinfo.port, rinfo.address, () => undefined);
        } catch (e) {
          this.internalError("udp send", e);
        }
      })
      .finally(() => this.inflight--);
  }

  private onTcp(sock: net.Socket): void {
    this.conns.add(sock);
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    sock.setTimeout(this.limits.tcpIdleMs, () => sock.destroy());
    sock.on("error", () => undefined);
    sock.on("close", () => this.conns.delete(sock));
    sock.on("data", (d: Buffer) => {
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (len < 12 || len > this.limits.maxTcpQuery || pending >= this.limits.maxTcpPipelined) {
          this.stats.dropped++;
          sock.destroy();
          return;
        }
        if (buf.length < 2 + len) return;
        const msg = Buffer.from(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        pending++;
        void this.answer(msg, { address: sock.remoteAddress ?? "", port: sock.remotePort ?? 0 }, "TCP").then(
          (reply) => {
            pending--;
            if (!reply || sock.destroyed) return;
            const head = Buffer.alloc(2);
            head.writeUInt16BE(reply.length);
            sock.write(Buffer.concat([head, reply]));
          },
        );
      }
    });
  }

  /** The reply for one query, or undefined to stay silent. Never rejects. */
  private async answer(
    msg: Buffer,
    src: { address: string; port: number },
    proto: L7Proto,
  ): Promise<Buffer | undefined> {
    try {
      return await this.decide(msg, src, proto);
    } catch (e) {
      this.internalError("answer", e);
      return undefined;
    }
  }

  private internalError(where: string, e: unknown): void {
    this.stats.internalErrors++;
    this.lastInternalError = `${where}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  }

  private async decide(
    msg: Buffer,
    src: { address: string; port: number },
    proto: L7Proto,
  ): Promise<Buffer | undefined> {
    this.stats.queries++;
    const info = await this.params.identify(src, proto);
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
      return undefined;
    }
    if (r.kind === "reply") {
      this.stats.formerr++;
      this.sink({ ...base, verdict: "error", rcode: RCODE_NAMES[r.rcode] ?? "", reason: r.reason });
      return buildReply(r.partial, r.rcode);
    }
    const q = r.query;
    const ev = { ...base, query: q.name, qtype: QTYPES[q.qtype] ?? `TYPE${q.qtype}` };
    const policy = info ? this.params.lookup.forConnection(lookupKey(info)) : undefined;
    if (!info || !policy || !l7Parser(policy, "dns")) {
      this.stats.refused++;
      this.sink({ ...ev, verdict: "error", rcode: "REFUSED", reason: "no DNS policy for this client" });
      return buildReply(q, RCODE.REFUSED);
    }
    if (!l7Admits(policy, (spec) => this.matcher(spec)(q.name))) {
      this.stats.refused++;
      this.sink({ ...ev, verdict: "denied", rcode: "REFUSED", reason: "no DNS rule matched" });
      return buildReply(q, RCODE.REFUSED);
    }
    const servfail = (reason: string): Buffer => {
      this.stats.servfail++;
      this.sink({ ...ev, verdict: "error", rcode: "SERVFAIL", reason });
      return buildReply(q, RCODE.SERVFAIL);
    };
    const up =
      this.params.upstream ??
      (info ? { host: info.originalDst.host, port: info.originalDst.port } : undefined);
    if (!up) return servfail("no upstream resolver");
    const t = this.limits.upstreamTimeoutMs;
    let reply: Buffer;
    let full: Buffer;
    try {
      reply = proto === "TCP" ? await exchangeTcp(up, msg, t) : await exchangeUdp(up, msg, q.id, t);
      full = reply;
      if (proto === "UDP" && readAnswer(reply, q).ok && reply.readUInt16BE(2) & 0x0200) {
        full = await exchangeTcp(up, msg, t);
        // The client gets the whole answer if it fits its buffer, else the truncated one (and retries over TCP).
        if (full.length <= q.udpSize) reply = full;
      }
    } catch (e) {
      this.stats.upstreamErrors++;
      return servfail(`upstream: ${e instanceof Error ? e.message : "failed"}`);
    }
    const a = readAnswer(full, q);
    if (!a.ok || (reply !== full && !readAnswer(reply, q).ok)) {
      this.stats.badAnswers++;
      return servfail(a.ok ? "bad truncated answer" : a.reason);
    }
    if (a.ips.length > 0) {
      try {
        await withTimeout(
          this.params.onAnswer(info.endpoint, q.name, a.ips, a.ttl),
          this.limits.answerTimeoutMs,
        );
      } catch (e) {
        this.stats.onAnswerFailures++;
        return servfail(`policy update: ${e instanceof Error ? e.message : "failed"}`);
      }
    }
    if (proto === "UDP" && reply.length > q.udpSize) reply = truncatedCopy(q, reply);
    this.stats.forwarded++;
    this.sink({
      ...ev,
      verdict: "forwarded",
      rcode: RCODE_NAMES[a.rcode] ?? `RCODE${a.rcode}`,
      answers: a.ips,
    });
    return reply;
  }

  private matcher(spec: L7Spec): (name: string) => boolean {
    let m = this.matchers.get(spec);
    if (!m) this.matchers.set(spec, (m = compileDnsRules(spec.dns)));
    return m;
  }
}

/** Header and question of an answer too large for the client's buffer, TC set. */
function truncatedCopy(q: Query, answer: Buffer): Buffer {
  const out = buildReply(q, answer.readUInt16BE(2) & 0xf);
  out.writeUInt16BE(answer.readUInt16BE(2) | 0x0200, 2);
  return out;
}

function withTimeout(p: Promise<void>, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`not done within ${ms} ms`)), ms);
    p.then(
      () => {
        clearTimeout(t);
        resolve();
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
