/**
 * Drives probe processes (src/probe/agent.ts) inside network namespaces: the
 * real traffic of the demo and of `membrane policy test --datapath`.
 *
 *   Probe.start(netns) --stdin JSON--> agent.js (in the netns) --stdout JSON--> results
 *
 * Results are "ok", "timeout" (dropped: nothing answered), or an errno code
 * such as "ECONNREFUSED" (the packet got through; nobody listened).
 */
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { runRaw } from "../datapath/exec.js";

export type ProbeResult = "ok" | "timeout" | string;

export class Probe {
  private seq = 0;
  private buf = "";
  private readonly waiting = new Map<number, (v: unknown) => void>();

  private constructor(
    readonly netns: string,
    private readonly proc: ChildProcessWithoutNullStreams,
  ) {
    proc.stdout.on("data", (d: Buffer) => {
      this.buf += d.toString("utf8");
      let i: number;
      while ((i = this.buf.indexOf("\n")) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const msg = JSON.parse(line) as { seq: number; result: unknown };
        this.waiting.get(msg.seq)?.(msg.result);
        this.waiting.delete(msg.seq);
      }
    });
    proc.on("exit", () => {
      for (const w of this.waiting.values()) w("probe exited");
      this.waiting.clear();
    });
  }

  /** Starts a probe inside `netns` ("" = the current namespace). */
  static start(netns: string): Probe {
    const script = fileURLToPath(new URL("./agent.js", import.meta.url));
    const argv =
      netns === "" ? [process.execPath, script] : ["ip", "netns", "exec", netns, process.execPath, script];
    const proc = spawn(argv[0] as string, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    return new Probe(netns, proc);
  }

  /** Sends one raw probe command (see agent.ts) and resolves with its result. */
  request(cmd: Record<string, unknown>): Promise<unknown> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(seq, resolve);
      this.proc.stdin.write(JSON.stringify({ ...cmd, seq }) + "\n");
    });
  }

  /** An echo server on [::]:port for TCP or UDP (IPv4 too). */
  async listen(proto: "tcp" | "udp", port: number): Promise<void> {
    const r = await this.request({ op: "listen", proto, port });
    if (r !== "ok")
      throw new Error(`probe in ${this.netns}: cannot listen on ${proto}/${port}: ${String(r)}`);
  }

  /** An HTTP/1.1 server on [::]:port answering 200 to every request. */
  async listenHttp(port: number): Promise<void> {
    const r = await this.request({ op: "http-listen", port });
    if (r !== "ok") throw new Error(`probe in ${this.netns}: cannot serve HTTP on ${port}: ${String(r)}`);
  }

  /** One HTTP request; the status code ("200", "403"), "timeout", or an error code. */
  async http(
    host: string,
    port: number,
    req: { method: string; path: string; headers?: Record<string, string> },
    timeoutMs = 1000,
  ): Promise<ProbeResult> {
    return String(await this.request({ op: "http", host, port, ...req, timeoutMs }));
  }

  /** An HTTP/2 cleartext server on [::]:port (gRPC calls get grpc-status 0). */
  async listenHttp2(port: number): Promise<void> {
    const r = await this.request({ op: "h2-listen", port });
    if (r !== "ok") throw new Error(`probe in ${this.netns}: cannot serve HTTP/2 on ${port}: ${String(r)}`);
  }

  /** One HTTP/2 request: "200", "403", "grpc-status 7", "timeout", or an error code. */
  async http2(
    host: string,
    port: number,
    req: { method: string; path: string; headers?: Record<string, string> },
    timeoutMs = 1000,
  ): Promise<ProbeResult> {
    return String(await this.request({ op: "h2", host, port, ...req, timeoutMs }));
  }

  /** One A query over UDP: "NOERROR 1.2.3.4", "REFUSED", "NXDOMAIN", "timeout". */
  async dns(server: string, name: string, timeoutMs = 1000, port = 53): Promise<ProbeResult> {
    return String(await this.request({ op: "dns", host: server, port, name, timeoutMs }));
  }

  async tcp(host: string, port: number, timeoutMs = 500): Promise<ProbeResult> {
    return String(await this.request({ op: "tcp", host, port, timeoutMs }));
  }

  async udp(host: string, port: number, timeoutMs = 500, bind?: string): Promise<ProbeResult> {
    return String(await this.request({ op: "udp", host, port, timeoutMs, ...(bind ? { bind } : {}) }));
  }

  /** Opens a TCP connection and keeps it (id) for later `send`s. */
  async open(id: string, host: string, port: number, timeoutMs = 500): Promise<ProbeResult> {
    return String(await this.request({ op: "open", id, host, port, timeoutMs }));
  }

  async send(id: string, timeoutMs = 500): Promise<ProbeResult> {
    return String(await this.request({ op: "send", id, timeoutMs }));
  }

  async ping(host: string, timeoutMs = 500): Promise<ProbeResult> {
    const r = await runRaw(["ping", "-c1", "-n", `-W${Math.max(1, Math.ceil(timeoutMs / 1000))}`, host], {
      ...(this.netns ? { netns: this.netns } : {}),
    });
    return r.status === 0 ? "ok" : "timeout";
  }

  /** A TCP handshake only (nothing sent): "ok", "timeout" or an error code. */
  async connect(host: string, port: number, timeoutMs = 500): Promise<ProbeResult> {
    return String(await this.request({ op: "connect", host, port, timeoutMs }));
  }

  /** A Kafka broker (kafka-broker.ts) on [::]:port. */
  async listenKafka(port: number): Promise<void> {
    const r = await this.request({ op: "kafka-listen", port });
    if (r !== "ok") throw new Error(`probe in ${this.netns}: cannot serve Kafka on ${port}: ${String(r)}`);
  }

  /**
   * One Kafka request on a new connection: "ok", "denied" (TOPIC_AUTHORIZATION_FAILED),
   * "error <code>", "closed", "reset", "timeout" or an error code. No clientID: a null client id.
   */
  async kafka(
    host: string,
    port: number,
    req: { apiKey: number; apiVersion: number; topic?: string; clientID?: string },
    timeoutMs = 1000,
  ): Promise<ProbeResult> {
    return String(await this.request({ op: "kafka", host, port, ...req, timeoutMs }));
  }

  /** A TLS server on [::]:port with the given certificate and key (PEM). */
  async listenTls(port: number, cert: string, key: string): Promise<void> {
    const r = await this.request({ op: "tls-listen", port, cert, key });
    if (r !== "ok") throw new Error(`probe in ${this.netns}: cannot serve TLS on ${port}: ${String(r)}`);
  }

  /** A TLS handshake with server name `sni`: "ok", "reset", "timeout" or an error code. */
  async tls(host: string, port: number, sni: string, timeoutMs = 1000): Promise<ProbeResult> {
    return String(await this.request({ op: "tls", host, port, sni, timeoutMs }));
  }

  /** A resolver on [::]:port answering what setDns gave (and echoing anything else). */
  async serveDns(proto: "udp" | "tcp", port: number): Promise<void> {
    const r = await this.request({ op: "dns-serve", proto, port });
    if (r !== "ok")
      throw new Error(`probe in ${this.netns}: cannot serve DNS on ${proto}/${port}: ${String(r)}`);
  }

  /** The addresses this probe's resolvers answer for `name`. */
  async setDns(name: string, ips: readonly string[], ttl?: number): Promise<void> {
    await this.request({ op: "dns-set", name, ips, ...(ttl !== undefined ? { ttl } : {}) });
  }

  /** One A or AAAA query over UDP or TCP: "NOERROR 1.2.3.4,...", "REFUSED", "timeout", ... */
  async dnsQuery(
    server: string,
    name: string,
    opts: { port?: number; qtype?: "A" | "AAAA"; tcp?: boolean; timeoutMs?: number } = {},
  ): Promise<ProbeResult> {
    return String(
      await this.request({
        op: "dns-query",
        host: server,
        port: opts.port ?? 53,
        name,
        qtype: opts.qtype ?? "A",
        tcp: opts.tcp === true,
        timeoutMs: opts.timeoutMs ?? 1000,
      }),
    );
  }

  /** Connections (TCP) or datagrams (UDP) the probe's server on `port` received. */
  async count(proto: "tcp" | "udp", port: number): Promise<number> {
    return Number(await this.request({ op: "count", proto, port }));
  }

  stop(): void {
    this.proc.stdin.end();
    this.proc.kill();
  }
}
