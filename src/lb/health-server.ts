/**
 * Service health checks, as kube-proxy serves them: for every LoadBalancer Service with
 * externalTrafficPolicy Local, an HTTP server on its healthCheckNodePort on this node, which
 * tells an outside load balancer whether to send the Service's traffic here.
 *
 *   sync([{namespace, name, port, localEndpoints}], healthy)
 *     --> a port not served yet: a listening socket in the node's namespace (health-listener.ts,
 *         via nsenter, handed over; or here when the agent runs in that namespace)
 *     --> any request: 200 when the node has local ready backends and its services' table is in
 *         place, else 503, with kube-proxy's JSON
 *         {"service":{"namespace","name"},"localEndpoints":N,"serviceProxyHealthy":bool}
 *     --> a port no longer asked for: closed, its connections ended
 *
 * The agent answers in process (as kube-proxy does): the listener child only binds, then exits;
 * no port here needs privilege (the node port range is above 1024). Requests are bounded:
 * small headers, short timeouts, few connections, no body read.
 */
import { fork } from "node:child_process";
import http from "node:http";
import net from "node:net";
import { fileURLToPath } from "node:url";

export interface HealthCheck {
  readonly namespace: string;
  readonly name: string;
  readonly port: number;
  readonly localEndpoints: number;
}

export interface HealthServersParams {
  /** The node's network namespace (a name under /run/netns or a path); absent: this process's. */
  readonly netns?: string;
  /** A port that could not be served (taken, namespace gone): logged, tried again at the next sync. */
  readonly onError?: (check: HealthCheck, why: string) => void;
}

/** Connections one health check port holds open at once. */
const MAX_CONNECTIONS = 64;
const LISTEN_TIMEOUT_MS = 15_000; // a safety net: nsenter + node start in well under a second

interface Served {
  check: HealthCheck;
  healthy: boolean;
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
}

/** The body and status kube-proxy gives (service_health.go), in our words. */
export function healthAnswer(c: HealthCheck, healthy: boolean): { status: number; body: string } {
  const ok = c.localEndpoints > 0 && healthy;
  const body = JSON.stringify({
    service: { namespace: c.namespace, name: c.name },
    localEndpoints: c.localEndpoints,
    serviceProxyHealthy: healthy,
  });
  return { status: ok ? 200 : 503, body };
}

export class HealthServers {
  private readonly served = new Map<string, Served>();
  /** Ports being opened: a sync meanwhile does not open them twice. */
  private readonly opening = new Set<string>();
  private stopped = false;

  constructor(private readonly p: HealthServersParams = {}) {}

  /** The ports served now, by "namespace/name" (for tests and `get services`). */
  ports(): Map<string, number> {
    return new Map([...this.served].map(([k, s]) => [k, s.check.port]));
  }

  /**
   * Serves exactly `checks`: counts updated at once, new ports opened, ports no longer asked for
   * closed. `healthy`: the services' table is as desired (false makes every answer 503).
   */
  async sync(checks: readonly HealthCheck[], healthy: boolean): Promise<void> {
    if (this.stopped) return;
    const want = new Map(checks.map((c) => [`${c.namespace}/${c.name}`, c]));
    for (const [key, s] of this.served) {
      const c = want.get(key);
      if (c !== undefined && c.port === s.check.port) {
        s.check = c;
        s.healthy = healthy;
      } else this.close(key, s);
    }
    const opens: Promise<void>[] = [];
    for (const [key, c] of want)
      if (!this.served.has(key) && !this.opening.has(key)) opens.push(this.open(key, c, healthy));
    await Promise.all(opens);
  }

  /** Closes every port (agent stop). */
  stop(): void {
    this.stopped = true;
    for (const [key, s] of this.served) this.close(key, s);
  }

  private close(key: string, s: Served): void {
    this.served.delete(key);
    s.server.close();
    for (const sock of s.sockets) sock.destroy();
  }

  private async open(key: string, c: HealthCheck, healthy: boolean): Promise<void> {
    this.opening.add(key);
    try {
      const server = this.p.netns !== undefined ? await listenInNetns(this.p.netns, c.port) : await listenHere(c.port); // prettier-ignore
      if (this.stopped) return void server.close();
      const s: Served = { check: c, healthy, server, sockets: new Set() };
      const answer = http.createServer(
        { maxHeaderSize: 4096, requestTimeout: 5000, headersTimeout: 5000, keepAliveTimeout: 5000 },
        (_req, res) => {
          const a = healthAnswer(s.check, s.healthy);
          res.writeHead(a.status, {
            "Content-Type": "application/json",
            "X-Content-Type-Options": "nosniff",
            "Content-Length": Buffer.byteLength(a.body),
          });
          res.end(a.body);
        },
      );
      answer.on("clientError", (_e, sock: net.Socket) => sock.destroy());
      server.maxConnections = MAX_CONNECTIONS;
      server.on("connection", (sock: net.Socket) => {
        s.sockets.add(sock);
        sock.on("close", () => s.sockets.delete(sock));
        answer.emit("connection", sock);
      });
      server.on("error", (e) => this.p.onError?.(s.check, e.message));
      this.served.set(key, s);
    } catch (e) {
      this.p.onError?.(c, e instanceof Error ? e.message : String(e));
    } finally {
      this.opening.delete(key);
    }
  }
}

function listenHere(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ port, host: "::", ipv6Only: false }, () => resolve(server));
  });
}

/** The namespace file of `netns` (a name under /run/netns, or a path). */
const netnsFile = (netns: string): string => (netns.startsWith("/") ? netns : `/run/netns/${netns}`);

/** A listening socket on `port` inside `netns` (health-listener.ts binds it and hands it over). */
function listenInNetns(netns: string, port: number): Promise<net.Server> {
  const child = fileURLToPath(new URL("./health-listener.js", import.meta.url));
  return new Promise<net.Server>((resolve, reject) => {
    let done = false;
    const settle = (f: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(t);
      f();
    };
    const cp = fork(child, [String(port)], {
      execPath: "nsenter",
      execArgv: [`--net=${netnsFile(netns)}`, "--", process.execPath],
      stdio: ["ignore", "ignore", "pipe", "ipc"],
      env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
    });
    let err = "";
    cp.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-400)));
    const t = setTimeout(() => {
      cp.kill("SIGKILL");
      settle(() => reject(new Error(`the listener for port ${port} did not start in time`)));
    }, LISTEN_TIMEOUT_MS);
    cp.on("message", (m: { ok?: boolean; error?: string }, handle: unknown) => {
      if (m.ok && handle instanceof net.Server) settle(() => resolve(handle));
      else settle(() => reject(new Error(`cannot listen on TCP port ${port} in ${netns}: ${m.error ?? "no socket came back"}`))); // prettier-ignore
    });
    cp.on("error", (e) => settle(() => reject(e)));
    cp.on("exit", (code) =>
      settle(() => reject(new Error(`the listener for port ${port} exited (${code}) ${err.trim()}`))),
    );
  });
}
