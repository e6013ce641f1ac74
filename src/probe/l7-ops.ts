/**
 * Probe operations for L7 traffic (`policy test --datapath`, tests): a bare
 * TCP connect, a Kafka broker and one-request client, a TLS server and a
 * client handshake with a chosen SNI.
 *
 *   {op: "connect", host, port, timeoutMs}          TCP handshake only -> "ok" | "timeout" | errno
 *   {op: "kafka-listen", port}                      startKafkaBroker on [::]:port
 *   {op: "kafka", host, port, apiKey, apiVersion, topic?, clientID?, timeoutMs}
 *                                                   one request -> "ok" | "denied" (error 29) | "error <code>"
 *                                                   | "closed" | "reset" | "timeout" | errno
 *   {op: "tls-listen", port, cert, key}             TLS server on [::]:port (PEM texts), closes after the handshake
 *   {op: "tls", host, port, sni, timeoutMs}         handshake, certificate not checked -> "ok" | "reset" | "timeout" | errno
 *   dns-serve, dns-set, dns-query                   see dns-ops.ts
 */
import net from "node:net";
import tls from "node:tls";
import { dnsQuery, dnsServe, dnsSet } from "./dns-ops.js";
import { startKafkaBroker } from "./kafka-broker.js";
import { decodeKafkaResponse, encodeKafkaRequest, readKafkaResponse } from "./kafka-client.js";

/** The fields of the L7 and DNS commands (agent.ts reads one JSON command per line). */
export interface L7Cmd {
  op: string;
  proto?: "tcp" | "udp";
  port?: number;
  host?: string;
  name?: string;
  apiKey?: number;
  apiVersion?: number;
  topic?: string;
  clientID?: string;
  sni?: string;
  cert?: string;
  key?: string;
  qtype?: "A" | "AAAA";
  tcp?: boolean;
  ips?: string[];
  ttl?: number;
}

/** Runs an L7 or DNS command; undefined when `c.op` is none of them. */
export function handleL7(
  c: L7Cmd,
  timeoutMs: number,
  bump: (k: string) => void,
): Promise<string> | undefined {
  const host = c.host ?? "";
  const port = c.port ?? 0;
  switch (c.op) {
    case "connect":
      return connectOnly(host, port, timeoutMs);
    case "kafka-listen":
      return kafkaListen(port);
    case "kafka": {
      const opt = {
        ...(c.topic !== undefined ? { topic: c.topic } : {}),
        ...(c.clientID !== undefined ? { clientID: c.clientID } : {}),
      };
      return kafkaOnce({
        host,
        port,
        apiKey: c.apiKey ?? 0,
        apiVersion: c.apiVersion ?? 0,
        ...opt,
        timeoutMs,
      });
    }
    case "tls-listen":
      return tlsListen(port, c.cert ?? "", c.key ?? "");
    case "tls":
      return tlsHandshake(host, port, c.sni ?? "", timeoutMs);
    case "dns-serve":
      return dnsServe(c.proto ?? "udp", c.port ?? 53, bump);
    case "dns-set":
      return Promise.resolve(dnsSet(c.name ?? "", c.ips ?? [], c.ttl));
    case "dns-query": {
      const opt = { ...(c.qtype ? { qtype: c.qtype } : {}), ...(c.tcp ? { tcp: true } : {}) };
      return dnsQuery({ host, port: c.port ?? 53, name: c.name ?? "", ...opt, timeoutMs });
    }
    default:
      return undefined;
  }
}

/** TOPIC_AUTHORIZATION_FAILED: the error code of a request the Kafka proxy refused. */
const TOPIC_AUTHORIZATION_FAILED = 29;

export function connectOnly(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => done("timeout"), timeoutMs);
    const done = (r: string): void => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    s.on("error", (e: NodeJS.ErrnoException) => done(e.code ?? String(e)));
    s.on("connect", () => done("ok"));
  });
}

export async function kafkaListen(port: number): Promise<string> {
  try {
    await startKafkaBroker({ host: "::", port });
    return "ok";
  } catch (e) {
    return String(e);
  }
}

export interface KafkaCmd {
  readonly host: string;
  readonly port: number;
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly topic?: string;
  /** Absent: a null client id (as a request that names none). */
  readonly clientID?: string;
  readonly timeoutMs: number;
}

/** Sends one request on a new connection and sums up its answer. */
export function kafkaOnce(c: KafkaCmd): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: c.host, port: c.port });
    let reset = false;
    const t = setTimeout(() => done("timeout"), c.timeoutMs);
    const done = (r: string): void => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    s.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNRESET") reset = true;
      else done(e.code ?? String(e));
    });
    s.on("connect", () => {
      clearTimeout(t);
      s.write(
        encodeKafkaRequest({
          apiKey: c.apiKey,
          apiVersion: c.apiVersion,
          correlationId: 7,
          clientId: c.clientID ?? null,
          topics: c.topic !== undefined ? [c.topic] : [],
        }),
      );
      void readKafkaResponse(s, c.timeoutMs).then((r) => {
        if (r === "timeout") return done("timeout");
        if (r === "closed") return done(reset ? "reset" : "closed");
        try {
          const d = decodeKafkaResponse(c.apiKey, c.apiVersion, r.bytes);
          const codes = [
            d.errorCode ?? 0,
            ...d.topics.flatMap((x) => [x.errorCode, ...x.partitions.map((p) => p.errorCode)]),
          ];
          if (codes.includes(TOPIC_AUTHORIZATION_FAILED)) return done("denied");
          const other = codes.find((x) => x !== 0);
          done(other === undefined ? "ok" : `error ${other}`);
        } catch (e) {
          done(`malformed: ${e instanceof Error ? e.message : String(e)}`);
        }
      });
    });
  });
}

export function tlsListen(port: number, cert: string, key: string): Promise<string> {
  return new Promise((resolve) => {
    const srv = tls.createServer({ cert, key }, (s) => {
      s.on("error", () => undefined);
      s.end();
    });
    srv.on("tlsClientError", () => undefined);
    srv.on("error", (e) => resolve(String(e)));
    srv.listen({ port, host: "::", ipv6Only: false }, () => resolve("ok"));
  });
}

/** A TLS handshake naming `sni`; the server's certificate is not checked (it is a throwaway). */
export function tlsHandshake(host: string, port: number, sni: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = tls.connect({ host, port, servername: sni, rejectUnauthorized: false });
    const t = setTimeout(() => done("timeout"), timeoutMs);
    const done = (r: string): void => {
      clearTimeout(t);
      s.destroy();
      resolve(r);
    };
    s.on("secureConnect", () => done("ok"));
    s.on("error", (e: NodeJS.ErrnoException) =>
      done(e.code === "ECONNRESET" ? "reset" : (e.code ?? String(e))),
    );
    s.on("close", () => done("closed"));
  });
}
