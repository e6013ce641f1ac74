/**
 * A small upstream resolver written with dns-packet (UDP and TCP on the same
 * port of 127.0.0.1), the DNS proxy in front of it, and clients.
 */
import dgram from "node:dgram";
import net from "node:net";
import dnsPacket from "dns-packet";
import { DnsProxy, type DnsProxyLimits } from "../../src/proxy/dns/proxy.js";
import type { L7Event, L7LookupResult } from "../../src/proxy/types.js";
import type { DnsRule } from "../../src/policy/types.js";

export type Answerer = (
  q: dnsPacket.DecodedPacket,
  proto: "UDP" | "TCP",
) => Buffer | undefined | Promise<Buffer | undefined>;

export function a(name: string, ip: string, ttl = 30): dnsPacket.Answer {
  return { type: "A", name, ttl, class: "IN", data: ip };
}

export function response(
  q: dnsPacket.DecodedPacket,
  answers: dnsPacket.Answer[],
  extra: Partial<dnsPacket.Packet> = {},
): Buffer {
  return dnsPacket.encode({
    id: q.id ?? 0,
    type: "response",
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
    questions: q.questions ?? [],
    answers,
    ...extra,
  });
}

export interface Upstream {
  port: number;
  received: { name: string; proto: "UDP" | "TCP" }[];
  close(): Promise<void>;
}

export async function startUpstream(answer: Answerer): Promise<Upstream> {
  const received: Upstream["received"] = [];
  const handle = async (msg: Buffer, proto: "UDP" | "TCP"): Promise<Buffer | undefined> => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return undefined;
    }
    received.push({ name: q.questions?.[0]?.name ?? "", proto });
    return answer(q, proto);
  };
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket("udp4");
    await new Promise<void>((r) => udp.bind(0, "127.0.0.1", r));
    const port = udp.address().port;
    const tcp = net.createServer((s) => {
      let buf = Buffer.alloc(0);
      s.on("error", () => undefined);
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const m = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + m.length);
          void handle(Buffer.from(m), "TCP")
            .then((r) => {
              if (!r || s.destroyed) return;
              const l = Buffer.alloc(2);
              l.writeUInt16BE(r.length);
              s.write(Buffer.concat([l, r]));
            })
            .catch(() => undefined);
        }
      });
    });
    const ok = await new Promise<boolean>((r) => {
      tcp.once("error", () => r(false));
      tcp.listen(port, "127.0.0.1", () => r(true));
    });
    if (!ok) {
      udp.close();
      if (attempt > 5) throw new Error("cannot bind UDP and TCP on one port");
      continue;
    }
    udp.on("message", (m, rinfo) => {
      void handle(m, "UDP")
        .then((r) => {
          // The socket may be closed by now (test teardown): sending would throw.
          if (r) udp.send(r, rinfo.port, rinfo.address);
        })
        .catch(() => undefined);
    });
    return {
      port,
      received,
      close: async () => {
        udp.close();
        await new Promise((r) => tcp.close(r));
      },
    };
  }
}

export interface AnswerCall {
  endpoint: string;
  name: string;
  ips: readonly string[];
  ttl: number;
  resolvedAt: number;
}

export interface DnsHarness {
  proxy: DnsProxy;
  udpPort: number;
  tcpPort: number;
  upstream: Upstream;
  events: L7Event[];
  calls: AnswerCall[];
  setPolicy(p: L7LookupResult | undefined): void;
  close(): Promise<void>;
}

export async function startDns(params: {
  answer: Answerer;
  rules?: DnsRule[];
  onAnswer?: (name: string) => Promise<void>;
  identify?: boolean;
  limits?: Partial<DnsProxyLimits>;
  /** The proxy's UDP path (DnsProxyParams.io); default: native when built. */
  io?: "native" | "dgram";
}): Promise<DnsHarness> {
  const upstream = await startUpstream(params.answer);
  const events: L7Event[] = [];
  const calls: AnswerCall[] = [];
  let policy: L7LookupResult | undefined = {
    spec: {
      parser: "dns",
      http: [],
      dns: params.rules ?? [{ matchPattern: "*.example.com" }],
      kafka: [],
      serverNames: [],
    },
    allowAll: false,
  };
  const proxy = new DnsProxy({
    upstream: { host: "127.0.0.1", port: upstream.port },
    lookup: { forConnection: () => policy },
    identify: () =>
      params.identify === false
        ? undefined
        : {
            srcIdentity: 3003,
            dstIdentity: 4004,
            direction: "egress",
            endpoint: "default/client",
            originalDst: { host: "10.96.0.10", port: 53 },
            proto: "UDP",
          },
    onAnswer: async (endpoint, name, ips, ttl) => {
      await (params.onAnswer ?? (() => Promise.resolve()))(name);
      calls.push({ endpoint, name, ips, ttl, resolvedAt: performance.now() });
    },
    sink: (e) => events.push(e),
    limits: { upstreamTimeoutMs: 300, answerTimeoutMs: 300, ...params.limits },
    ...(params.io !== undefined ? { io: params.io } : {}),
  });
  const { udpPort, tcpPort } = await proxy.start();
  return {
    proxy,
    udpPort,
    tcpPort,
    upstream,
    events,
    calls,
    setPolicy: (p) => (policy = p),
    close: async () => {
      await proxy.stop();
      await upstream.close();
    },
  };
}

/** Both UDP paths of the proxy: the tests that take `io` run once on each. */
export const IO_PATHS = ["native", "dgram"] as const;

export function query(
  name: string,
  opts: { id?: number; type?: dnsPacket.RecordType; edns?: number } = {},
): Buffer {
  return dnsPacket.encode({
    id: opts.id ?? 4242,
    type: "query",
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: opts.type ?? "A", name, class: "IN" }],
    ...(opts.edns
      ? {
          additionals: [
            {
              type: "OPT",
              name: ".",
              udpPayloadSize: opts.edns,
              extendedRcode: 0,
              ednsVersion: 0,
              flags: 0,
              flag_do: false,
              options: [],
            },
          ],
        }
      : {}),
  });
}

/** Sends one datagram; the reply and when it arrived, or undefined after `timeoutMs`. */
export function udpAsk(
  port: number,
  msg: Buffer,
  timeoutMs = 1000,
): Promise<{ raw: Buffer; at: number } | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket("udp4");
    const t = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, timeoutMs);
    s.on("message", (m) => {
      clearTimeout(t);
      s.close();
      resolve({ raw: m, at: performance.now() });
    });
    s.send(msg, port, "127.0.0.1");
  });
}

/** Sends framed messages on one TCP connection; collects `want` framed replies (or what came before close). */
export function tcpAsk(
  port: number,
  payload: Buffer,
  want: number,
  timeoutMs = 1000,
): Promise<{ replies: Buffer[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    const replies: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ replies, closed });
    };
    const t = setTimeout(() => finish(false), timeoutMs);
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        replies.push(Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (replies.length >= want) finish(false);
    });
    s.on("error", () => finish(true));
    s.on("close", () => finish(true));
    s.write(payload);
  });
}

export function framed(...msgs: Buffer[]): Buffer {
  return Buffer.concat(
    msgs.map((m) => {
      const l = Buffer.alloc(2);
      l.writeUInt16BE(m.length);
      return Buffer.concat([l, m]);
    }),
  );
}

export function rcodeOf(raw: Buffer): number {
  return raw.readUInt16BE(2) & 0xf;
}
