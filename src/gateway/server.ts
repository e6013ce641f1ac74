/**
 * The gateway's listeners: one TCP (HTTP) or TLS (HTTPS) server per served
 * address:port of the RouteTable, replaced when the table changes (a port no
 * longer served is closed; one whose protocol or certificates changed is
 * reopened; the others keep their connections and see the new routes on
 * their next request).
 *
 *   RouteTable --update--> net.Server | tls.Server (SNI: listener hostname, then
 *                          the certificate's own names, then the first; ALPN h2, http/1.1)
 *     first bytes the HTTP/2 preface (h2c prior knowledge) or ALPN h2 --> h2-stream.ts
 *     otherwise                                                       --> GatewayExchange (HTTP/1.1)
 */
import { X509Certificate } from "node:crypto";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { MembraneError } from "../errors.js";
import { looksLikeHttp2 } from "../proxy/http2/preface.js";
import { GatewayExchange, type GatewayEvent } from "./exchange.js";
import { H2Sessions } from "../proxy/http2/sessions.js";
import { H2_SETTINGS, serveH2Session } from "./h2-stream.js";
import { hostMatches, requestHost } from "./hostnames.js";
import type { RouteTable, ServedPort } from "./table.js";
import { UpstreamPool } from "./upstream.js";
import { sourcesOf } from "./source.js";
import { OwnListeners } from "./own-listeners.js";

export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

export interface GatewayServerParams {
  /** Ready endpoint addresses of a Service. */
  readonly endpoints: (namespace: string, name: string) => readonly string[];
  /** The PEM pair of a secret (as checked by compile's certificateProblem). */
  readonly keyPair: (namespace: string, name: string) => KeyPair | undefined;
  readonly onEvent?: (e: GatewayEvent) => void;
  /** Source address of upstream connections (the ingress identity's address). */
  readonly localAddress?: string;
  /** Source address of upstream IPv6 connections (the ingress identity's IPv6 address). */
  readonly localAddress6?: string;
  /**
   * "stream": HTTP/1.1 sockets on Node's streams even when the native socket I/O add-on is
   * built (default: MEMBRANE_PROXY_IO, as the proxy). TLS and HTTP/2 always use streams.
   */
  readonly io?: "native" | "stream";
  readonly random?: () => number;
}

interface Open {
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
  readonly signature: string;
  port: ServedPort;
}

export class GatewayServer {
  private readonly open = new Map<string, Open>();
  private readonly pool: UpstreamPool;
  private readonly sessions: H2Sessions;
  private readonly agent: http.Agent;
  /** The listeners of the table being served: never a backend (own-listeners.ts). */
  private readonly own = new OwnListeners();

  constructor(private readonly p: GatewayServerParams) {
    const local = sourcesOf(p);
    this.pool = new UpstreamPool({ ...local, ...(p.io ? { io: p.io } : {}) });
    this.sessions = new H2Sessions(local);
    // Bounded: a client resetting streams as fast as it opens them (HTTP/2 rapid reset) queues
    // requests here instead of opening a backend connection for each.
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 16 });
  }

  /** Addresses and ports being served. */
  get serving(): string[] {
    return [...this.open.keys()];
  }

  async update(table: RouteTable): Promise<void> {
    const want = new Map(table.ports.map((p) => [`${p.address}:${p.port}`, p]));
    // Before any listener opens: its first request already cannot pick the gateway itself.
    this.own.set(table.ports);
    for (const [key, o] of this.open) {
      const p = want.get(key);
      if (!p || signature(p) !== o.signature) {
        this.open.delete(key);
        await closeServer(o);
      }
    }
    for (const [key, p] of want) {
      const o = this.open.get(key);
      if (o) {
        o.port = p;
        continue;
      }
      const sockets = new Set<net.Socket>();
      const entry: Open = {
        server: this.makeServer(p, () => entry.port, sockets),
        sockets,
        signature: signature(p),
        port: p,
      };
      await listen(entry.server, p);
      this.open.set(key, entry);
    }
  }

  /** Closes idle backend connections (new requests connect anew, judged by current policy). */
  dropIdle(): void {
    this.pool.close();
    this.sessions.close(true);
    // Idle kept-alive sockets only: requests in flight on the others finish.
    for (const list of Object.values(this.agent.freeSockets)) for (const s of list ?? []) s.destroy();
  }

  async stop(): Promise<void> {
    for (const o of this.open.values()) await closeServer(o);
    this.open.clear();
    this.pool.close();
    this.sessions.close();
    this.agent.destroy();
  }

  private makeServer(p: ServedPort, current: () => ServedPort, sockets: Set<net.Socket>): net.Server {
    const id = `${p.address}:${p.port}`;
    const onEvent = this.p.onEvent ?? (() => undefined);
    const random = this.p.random ? { random: this.p.random } : {};
    // One HTTP/2 server per listener port: it never listens, it adopts the connections that speak h2.
    const h2 = http2.createServer({ settings: H2_SETTINGS });
    h2.on("session", (s: http2.ServerHttp2Session) =>
      serveH2Session(s, id, {
        port: current,
        endpoints: this.p.endpoints,
        own: this.own,
        sessions: this.sessions,
        agent: this.agent,
        onEvent,
        ...sourcesOf(this.p),
        ...random,
      }),
    );
    const http1 = (s: net.Socket): void =>
      new GatewayExchange(s, id, {
        port: current,
        endpoints: this.p.endpoints,
        own: this.own,
        pool: this.pool,
        sessions: this.sessions,
        onEvent,
        ...random,
        ...(this.p.io ? { io: this.p.io } : {}),
      }).start();
    const handle = (s: net.Socket): void => {
      sockets.add(s);
      s.once("close", () => sockets.delete(s));
      if ((s as tls.TLSSocket).alpnProtocol === "h2") return void h2.emit("connection", s);
      if (p.protocol === "HTTPS") return http1(s);
      sniff(s, (head, isH2) => {
        // Either side reads the socket itself: the bytes go back first (GatewayExchange takes
        // the paused socket, and its fd when the native add-on is there, resuming it otherwise).
        s.unshift(head);
        if (isH2) return void h2.emit("connection", s);
        http1(s);
      });
    };
    // Half-open allowed: a client that sends its last request and its FIN together still gets the answer.
    if (p.protocol === "HTTP") return net.createServer({ allowHalfOpen: true }, handle);
    const contexts = p.certificates.map((c) => {
      const pair = this.p.keyPair(c.namespace, c.name);
      if (!pair)
        throw new MembraneError(
          "TLS_SECRET_INVALID",
          `Cannot serve ${id}: secret ${c.namespace}/${c.name} cannot be read`,
        );
      return {
        hostname: c.hostname,
        x509: new X509Certificate(pair.cert),
        ctx: tls.createSecureContext({ cert: pair.cert, key: pair.key }),
      };
    });
    const first = contexts[0];
    if (!first) throw new MembraneError("TLS_SECRET_INVALID", `Cannot serve ${id}: no certificate`);
    const server = tls.createServer(
      {
        SNICallback: (servername, cb) => {
          const h = requestHost(servername);
          const pick =
            contexts.find((c) => c.hostname !== "" && hostMatches(c.hostname, h)) ??
            contexts.find((c) => c.x509.checkHost(h) !== undefined) ??
            first;
          cb(null, pick.ctx);
        },
        secureContext: first.ctx,
        minVersion: "TLSv1.2",
        ALPNProtocols: ["h2", "http/1.1"],
      },
      handle,
    );
    server.on("tlsClientError", () => undefined);
    return server;
  }
}

/** Reads until the first bytes tell h2c prior knowledge (the preface) from HTTP/1.x. */
function sniff(s: net.Socket, then: (head: Buffer, h2: boolean) => void): void {
  let head: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => s.destroy(), 30_000);
  const done = (): void => {
    clearTimeout(timer);
    s.off("data", onData);
    s.off("end", onEnd);
    s.pause();
  };
  const onEnd = (): void => {
    done();
    s.destroy();
  };
  const onData = (d: Buffer): void => {
    head = head.length === 0 ? d : Buffer.concat([head, d]);
    const v = looksLikeHttp2(head);
    if (v === "need-more") return;
    done();
    then(head, v === "yes");
  };
  s.on("data", onData);
  s.on("end", onEnd);
  s.on("error", () => s.destroy());
}

function signature(p: ServedPort): string {
  return JSON.stringify([p.protocol, p.certificates]);
}

function listen(server: net.Server, p: ServedPort): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (e) =>
      reject(
        new MembraneError(
          "API_FAILED",
          `Cannot serve the gateway listener ${p.address}:${p.port}: ${e.message}`,
          { cause: e },
        ),
      ),
    );
    server.listen({ host: p.address, port: p.port }, () => resolve());
  });
}

function closeServer(o: Open): Promise<void> {
  return new Promise((resolve) => {
    o.server.close(() => resolve());
    // Open keep-alive connections would hold close() forever.
    for (const s of o.sockets) s.destroy();
  });
}
