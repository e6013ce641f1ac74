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
 */
import dgram from "node:dgram";
import net from "node:net";
import { createInterface } from "node:readline";

interface Cmd {
  seq: number;
  op: string;
  proto?: "tcp" | "udp";
  port?: number;
  host?: string;
  bind?: string;
  id?: string;
  timeoutMs?: number;
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
    case "count":
      return counts.get(`${c.proto ?? "tcp"}/${c.port ?? 0}`) ?? 0;
    default:
      return `unknown op ${c.op}`;
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line) as Cmd;
  void handle(c).then((result) => process.stdout.write(JSON.stringify({ seq: c.seq, result }) + "\n"));
});
rl.on("close", () => process.exit(0));
