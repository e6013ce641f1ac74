/**
 * Benchmark of the L7 proxies on loopback: the same load sent straight to
 * the server and through the proxy, side by side.
 *
 *   node dist/bench/proxy.js   -> one JSON line
 *
 * HTTP: keep-alive clients (node:http Agent, `concurrency` sockets) send
 * GET requests that an HTTP rule allows; requests/s and p50/p99 latency.
 * DNS: `concurrency` UDP clients each with one query in flight; queries/s.
 * Bounded by count and by time per mode.
 */
import dgram from "node:dgram";
import http from "node:http";
import net from "node:net";
import type { AddressInfo } from "node:net";
import dnsPacket from "dns-packet";
import { DnsProxy } from "../src/proxy/dns/proxy.js";
import { handleHttpConnection } from "../src/proxy/http/proxy.js";
import type { ConnectionInfo, L7LookupResult } from "../src/proxy/types.js";

const HTTP_REQUESTS = 20000;
const DNS_QUERIES = 20000;
const MAX_MS = 8000;
const CONCURRENCY = 16;

interface LoadResult {
  count: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
}

function summarise(lat: number[], ms: number, errors: number): LoadResult {
  lat.sort((a, b) => a - b);
  const pct = (p: number): number =>
    +(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))] ?? 0).toFixed(3);
  return {
    count: lat.length,
    perSecond: Math.round((lat.length / ms) * 1000),
    p50Ms: pct(50),
    p99Ms: pct(99),
    errors,
  };
}

const listen = (s: net.Server | http.Server): Promise<number> =>
  new Promise((r) => s.listen(0, "127.0.0.1", () => r((s.address() as AddressInfo).port)));

const info = (port: number, proto: "TCP" | "UDP"): ConnectionInfo => ({
  srcIdentity: 1000,
  dstIdentity: 2000,
  direction: "egress",
  endpoint: "bench/client",
  originalDst: { host: "127.0.0.1", port },
  proto,
});

async function httpLoad(port: number): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const start = performance.now();
  const one = (): Promise<void> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.get(
        { host: "127.0.0.1", port, path: "/api/items/1", agent, headers: { host: "svc" } },
        (res) => {
          res.resume();
          res.on("end", () => {
            if (res.statusCode === 200) lat.push(performance.now() - t0);
            else errors++;
            resolve();
          });
        },
      );
      req.on("error", () => {
        errors++;
        resolve();
      });
    });
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < HTTP_REQUESTS && performance.now() - start < MAX_MS) await one();
    }),
  );
  agent.destroy();
  return summarise(lat, performance.now() - start, errors);
}

async function dnsLoad(port: number): Promise<LoadResult> {
  const lat: number[] = [];
  let errors = 0;
  let next = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async (_, w) => {
      const sock = dgram.createSocket("udp4");
      await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r));
      let id = w * 1000;
      while (next++ < DNS_QUERIES && performance.now() - start < MAX_MS) {
        id = (id + 1) & 0xffff;
        const q = dnsPacket.encode({
          id,
          type: "query",
          questions: [{ type: "A", name: "api.example.com" }],
        });
        const t0 = performance.now();
        const ok = await new Promise<boolean>((resolve) => {
          const t = setTimeout(() => resolve(false), 1000);
          const on = (m: Buffer): void => {
            if (m.readUInt16BE(0) !== id) return;
            clearTimeout(t);
            sock.off("message", on);
            resolve(true);
          };
          sock.on("message", on);
          sock.send(q, port, "127.0.0.1");
        });
        if (ok) lat.push(performance.now() - t0);
        else errors++;
      }
      sock.close();
    }),
  );
  return summarise(lat, performance.now() - start, errors);
}

export async function runProxyBench(): Promise<Record<string, unknown>> {
  // HTTP
  const upstream = http.createServer({ keepAliveTimeout: 30_000 }, (_req, res) => {
    res.writeHead(200, { "content-type": "application/json", "content-length": 11 });
    res.end('{"ok":true}');
  });
  const upPort = await listen(upstream);
  const policy: L7LookupResult = {
    spec: {
      parser: "http",
      http: [{ method: "GET", path: "/api/items/[0-9]+", headers: [] }],
      dns: [],
      kafka: [],
      serverNames: [],
    },
    allowAll: false,
  };
  const proxy = net.createServer({ allowHalfOpen: true }, (s) =>
    handleHttpConnection(s, info(upPort, "TCP"), {
      lookup: { forConnection: () => policy },
      connectUpstream: (host, port) => net.connect(port, host),
      sink: () => undefined,
    }),
  );
  const proxyPort = await listen(proxy);
  const httpDirect = await httpLoad(upPort);
  const httpProxied = await httpLoad(proxyPort);
  upstream.closeAllConnections();
  await Promise.all([new Promise((r) => proxy.close(r)), new Promise((r) => upstream.close(r))]);

  // DNS
  const resolver = dgram.createSocket("udp4");
  resolver.on("message", (m, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(m);
    } catch {
      return;
    }
    const name = q.questions?.[0]?.name ?? "";
    const a = dnsPacket.encode({
      id: q.id ?? 0,
      type: "response",
      flags: dnsPacket.RECURSION_AVAILABLE,
      questions: q.questions ?? [],
      answers: [{ type: "A", name, ttl: 30, class: "IN", data: "10.0.0.1" }],
    });
    resolver.send(a, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => resolver.bind(0, "127.0.0.1", r));
  const resolverPort = resolver.address().port;
  const dns = new DnsProxy({
    upstream: { host: "127.0.0.1", port: resolverPort },
    lookup: {
      forConnection: () => ({
        spec: {
          parser: "dns",
          http: [],
          dns: [{ matchPattern: "*.example.com" }],
          kafka: [],
          serverNames: [],
        },
        allowAll: false,
      }),
    },
    identify: () => info(53, "UDP"),
    onAnswer: () => Promise.resolve(),
    sink: () => undefined,
  });
  const { udpPort } = await dns.start();
  const dnsDirect = await dnsLoad(resolverPort);
  const dnsProxied = await dnsLoad(udpPort);
  await dns.stop();
  resolver.close();

  return {
    bench: "proxy",
    concurrency: CONCURRENCY,
    http: { direct: httpDirect, proxied: httpProxied },
    dns: { direct: dnsDirect, proxied: dnsProxied, proxyStats: dns.stats },
  };
}

if (process.argv[1]?.endsWith("proxy.js")) {
  void runProxyBench().then((r) => console.log(JSON.stringify(r)));
}
