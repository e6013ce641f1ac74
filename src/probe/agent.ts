/**
 * A probe process run inside a network namespace (demo, `policy test --datapath`, tests)
 * (`ip netns exec NS node dist/src/probe/agent.js`).
 *
 * Reads one JSON command per line on stdin, answers one JSON line
 * `{seq, result}` on stdout. Commands:
 *   {op: "listen", proto: "tcp"|"udp", port}      echo server on [::]:port (IPv4 too)
 *   {op: "tcp", host, port, timeoutMs}            connect + echo round trip -> "ok" | "timeout" | error code
 *   {op: "udp", host, port, timeoutMs, bind?}     datagram + echo -> "ok" | "timeout"
 *   {op: "open", id, host, port, timeoutMs}       keep a TCP connection open -> "ok" | ...
 *   {op: "send", id, timeoutMs}                   echo round trip on it -> "ok" | "timeout" | "closed"
 *   {op: "count", proto, port}                    datagrams/connections the server got -> number
 *   {op: "http-listen", port}                     HTTP/1.1 server on [::]:port: 200 "ok <METHOD> <path>" to all
 *   {op: "http", host, port, method, path, headers?, timeoutMs}
 *                                                 one request -> "200" | "403" | ... | "timeout" | error code
 *   {op: "h2-listen", port}                       HTTP/2 cleartext server: 200 "ok" (gRPC calls: grpc-status 0)
 *   {op: "h2", host, port, method, path, headers?, timeoutMs}
 *                                                 one HTTP/2 request -> "200" | "403" | "grpc-status 7" | ...
 *   {op: "dns", host, port, name, timeoutMs}      A query over UDP -> "NOERROR 1.2.3.4,..." | "REFUSED" | "timeout"
 * L7 operations (l7-ops.ts): connect, kafka-listen, kafka, tls-listen, tls;
 * DNS resolver and client (dns-ops.ts): dns-serve, dns-set, dns-query.
 */
import dgram from "node:dgram";
import dnsPacket from "dns-packet";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { createInterface } from "node:readline";
import { handleL7, type L7Cmd } from "./l7-ops.js";

interface Cmd extends L7Cmd {
  seq: number;
  op: string;
  proto?: "tcp" | "udp";
  port?: number;
  host?: string;
  bind?: string;
  id?: string;
  timeoutMs?: number;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  name?: string;
}

function dnsQuery(c: Cmd, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const host = c.host ?? "";
    const sock = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const id = Math.floor(Math.random() * 65535);
    const t = setTimeout(() => finish("timeout"), timeoutMs);
    const finish = (r: string): void => {
      clearTimeout(t);
      sock.close();
      resolve(r);
    };
    sock.on("message", (m) => {
      try {
        const a = dnsPacket.decode(m);
        if (a.id !== id) return;
        const ips = (a.answers ?? []).flatMap((x) =>
          x.type === "A" || x.type === "AAAA" ? [String(x.data)] : [],
        );
        finish(`${(a as { rcode?: string }).rcode ?? "?"}${ips.length ? " " + ips.join(",") : ""}`);
      } catch {
        finish("malformed");
      }
    });
    sock.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
    const q = dnsPacket.encode({
      type: "query",
      id,
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: "A", name: c.name ?? "" }],
    });
    sock.send(q, c.port ?? 53, host);
  });
}

function httpListen(port: number): Promise<string> {
  return new Promise((resolve) => {
    const srv = http.createServer((req, res) => {
      bump(`tcp/${port}`);
      req.resume();
      req.on("end", () => res.end(`ok ${req.method ?? ""} ${req.url ?? ""}\n`));
    });
    srv.on("error", (e) => resolve(String(e)));
    srv.listen({ port, host: "::", ipv6Only: false }, () => resolve("ok"));
  });
}

function h2Listen(port: number): Promise<string> {
  return new Promise((resolve) => {
    const srv = http2.createServer();
    srv.on("stream", (stream, headers) => {
      bump(`tcp/${port}`);
      stream.on("error", () => undefined);
      stream.resume();
      const grpc = String(headers["content-type"] ?? "").startsWith("application/grpc");
      stream.on("end", () => {
        if (!grpc) {
          stream.respond({ ":status": 200 });
          stream.end("ok\n");
          return;
        }
        stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
        stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
        stream.end(Buffer.from([0, 0, 0, 0, 0]));
      });
    });
    srv.on("error", (e) => resolve(String(e)));
    srv.listen({ port, host: "::", ipv6Only: false }, () => resolve("ok"));
  });
}

/** One HTTP/2 request; a gRPC status (headers or trailers) wins over the HTTP status. */
function h2Request(c: Cmd, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const host = (c.host ?? "").includes(":") ? `[${c.host ?? ""}]` : (c.host ?? "");
    const session = http2.connect(`http://${host}:${c.port ?? 0}`);
    let status = "";
    let grpc: string | undefined;
    const t = setTimeout(() => finish("timeout"), timeoutMs);
    const finish = (r: string): void => {
      clearTimeout(t);
      session.destroy();
      resolve(r);
    };
    session.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
    const req = session.request({
      ":method": c.method ?? "GET",
      ":path": c.path ?? "/",
      ...(c.headers ?? {}),
    });
    req.on("response", (h) => {
      status = String(h[":status"] ?? "");
      if (h["grpc-status"] !== undefined) grpc = String(h["grpc-status"]);
    });
    req.on("trailers", (h) => {
      if (h["grpc-status"] !== undefined) grpc = String(h["grpc-status"]);
    });
    req.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
    req.resume();
    req.on("end", () => finish(grpc !== undefined ? `grpc-status ${grpc}` : status));
    if ((c.method ?? "GET") === "POST") req.end(Buffer.from([0, 0, 0, 0, 0]));
    else req.end();
  });
}

function httpRequest(c: Cmd, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: c.host,
        port: c.port,
        method: c.method ?? "GET",
        path: c.path ?? "/",
        headers: c.headers ?? {},
        agent: false,
        timeout: timeoutMs,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(String(res.statusCode)));
        res.on("error", () => resolve(String(res.statusCode)));
      },
    );
    req.on("timeout", () => {
      req.destroy();
      resolve("timeout");
    });
    req.on("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
    req.end();
  });
}

const counts = new Map<string, number>();
const conns = new Map<string, net.Socket>();
const bump = (k: string): void => void counts.set(k, (counts.get(k) ?? 0) + 1);

function listen(proto: "tcp" | "udp", port: number): Promise<string> {
  return new Promise((resolve) => {
    if (proto === "tcp") {
      const srv = net.createServer((s) => {
        bump(`tcp/${port}`);
        s.on("data", (d) => s.write(d));
        s.on("error", () => undefined);
      });
      srv.on("error", (e) => resolve(String(e)));
      srv.listen({ port, host: "::", ipv6Only: false }, () => resolve("ok"));
    } else {
      const sock = dgram.createSocket({ type: "udp6", ipv6Only: false });
      sock.on("message", (msg, rinfo) => {
        bump(`udp/${port}`);
        sock.send(msg, rinfo.port, rinfo.address);
      });
      sock.on("error", (e) => resolve(String(e)));
      sock.bind(port, "::", () => resolve("ok"));
    }
  });
}

function tcpRoundTrip(s: net.Socket, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => done("timeout"), timeoutMs);
    const done = (r: string): void => {
      clearTimeout(t);
      s.off("data", onData);
      resolve(r);
    };
    const onData = (): void => done("ok");
    s.on("data", onData);
    // A reset (e.g. the TLS proxy refusing plain bytes) is told at once, not as a timeout.
    s.once("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "ECONNRESET") done("reset");
    });
    s.write("ping\n");
  });
}

function tcpConnect(host: string, port: number, timeoutMs: number): Promise<{ r: string; s?: net.Socket }> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      resolve({ r: "timeout" });
    }, timeoutMs);
    s.on("error", (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      resolve({ r: e.code ?? String(e) });
    });
    s.on("connect", () => {
      clearTimeout(t);
      resolve({ r: "ok", s });
    });
  });
}

async function handle(c: Cmd): Promise<unknown> {
  const timeoutMs = c.timeoutMs ?? 500;
  switch (c.op) {
    case "listen":
      return listen(c.proto ?? "tcp", c.port ?? 0);
    case "tcp":
    case "open": {
      const { r, s } = await tcpConnect(c.host ?? "", c.port ?? 0, timeoutMs);
      if (!s) return r;
      s.on("error", () => undefined);
      const rt = await tcpRoundTrip(s, timeoutMs);
      if (c.op === "open" && rt === "ok") conns.set(c.id ?? "", s);
      else s.destroy();
      return rt;
    }
    case "send": {
      const s = conns.get(c.id ?? "");
      if (!s || s.destroyed) return "closed";
      return tcpRoundTrip(s, timeoutMs);
    }
    case "udp":
      return new Promise((resolve) => {
        const v6 = (c.host ?? "").includes(":");
        const sock = dgram.createSocket(v6 ? "udp6" : "udp4");
        const t = setTimeout(() => finish("timeout"), timeoutMs);
        const finish = (r: string): void => {
          clearTimeout(t);
          sock.close();
          resolve(r);
        };
        sock.on("message", () => finish("ok"));
        sock.on("error", (e: NodeJS.ErrnoException) => finish(e.code ?? String(e)));
        sock.bind(0, c.bind, () => sock.send("ping", c.port ?? 0, c.host ?? ""));
      });
    case "http-listen":
      return httpListen(c.port ?? 0);
    case "http":
      return httpRequest(c, timeoutMs);
    case "dns":
      return dnsQuery(c, timeoutMs);
    case "h2-listen":
      return h2Listen(c.port ?? 0);
    case "h2":
      return h2Request(c, timeoutMs);
    case "count":
      return counts.get(`${c.proto ?? "tcp"}/${c.port ?? 0}`) ?? 0;
    default:
      return handleL7(c, timeoutMs, bump) ?? `unknown op ${c.op}`;
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line) as Cmd;
  void handle(c).then((result) => process.stdout.write(JSON.stringify({ seq: c.seq, result }) + "\n"));
});
rl.on("close", () => process.exit(0));
