/**
 * A keep-alive HTTP/1.1 client run inside a network namespace for the "ka"
 * tests (`ip netns exec NS node keepalive-client.js`): one TCP connection per
 * id, kept open between requests, so a test can send a request on a
 * connection that was established before a policy change.
 *
 * One JSON command per line on stdin, one `{seq, result}` line on stdout:
 *   {op: "open", id, host, port, timeoutMs}      connect -> "ok" | "timeout" | errno
 *   {op: "get", id, path, timeoutMs}             GET on that connection -> "200" | "403" | ...
 *                                                | "ECONNRESET" | "closed" (FIN) | "timeout" | errno
 *   {op: "state", id}                            "open" | "closed <errno or FIN>" (what the socket saw)
 */
import net from "node:net";
import { createInterface } from "node:readline";

interface Cmd {
  seq: number;
  op: string;
  id?: string;
  host?: string;
  port?: number;
  path?: string;
  timeoutMs?: number;
}

interface Conn {
  sock: net.Socket;
  buf: Buffer;
  /** Why the socket ended (errno code or "FIN"), once it did. */
  ended?: string;
  waiter?: (() => void) | undefined;
}

const conns = new Map<string, Conn>();

function open(c: Cmd): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: c.host ?? "", port: c.port ?? 0 });
    const conn: Conn = { sock, buf: Buffer.alloc(0) };
    const t = setTimeout(() => {
      sock.destroy();
      resolve("timeout");
    }, c.timeoutMs ?? 1000);
    sock.on("data", (d: Buffer) => {
      conn.buf = Buffer.concat([conn.buf, d]);
      conn.waiter?.();
    });
    sock.on("error", (e: NodeJS.ErrnoException) => {
      conn.ended ??= e.code ?? String(e);
      clearTimeout(t);
      resolve(conn.ended);
      conn.waiter?.();
    });
    sock.on("end", () => {
      conn.ended ??= "FIN";
      conn.waiter?.();
    });
    sock.on("close", () => {
      conn.ended ??= "FIN";
      conn.waiter?.();
    });
    sock.on("connect", () => {
      clearTimeout(t);
      conns.set(c.id ?? "", conn);
      resolve("ok");
    });
  });
}

/** The status of one complete response at the head of `buf` (Content-Length framing), or undefined. */
function takeResponse(conn: Conn): string | undefined {
  const head = conn.buf.indexOf("\r\n\r\n");
  if (head < 0) return undefined;
  const text = conn.buf.subarray(0, head).toString("latin1");
  const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(text)?.[1] ?? "0");
  if (conn.buf.length < head + 4 + len) return undefined;
  conn.buf = conn.buf.subarray(head + 4 + len);
  return /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? "malformed";
}

function get(c: Cmd): Promise<string> {
  const conn = conns.get(c.id ?? "");
  if (!conn) return Promise.resolve("no such connection");
  if (conn.ended !== undefined) return Promise.resolve(conn.ended === "FIN" ? "closed" : conn.ended);
  return new Promise((resolve) => {
    const t = setTimeout(() => done("timeout"), c.timeoutMs ?? 1000);
    const done = (r: string): void => {
      clearTimeout(t);
      conn.waiter = undefined;
      resolve(r);
    };
    conn.waiter = () => {
      const status = takeResponse(conn);
      if (status !== undefined) done(status);
      else if (conn.ended !== undefined) done(conn.ended === "FIN" ? "closed" : conn.ended);
    };
    conn.sock.write(`GET ${c.path ?? "/"} HTTP/1.1\r\nHost: ka.test\r\nConnection: keep-alive\r\n\r\n`);
  });
}

function handle(c: Cmd): Promise<string> {
  switch (c.op) {
    case "open":
      return open(c);
    case "get":
      return get(c);
    case "state": {
      const conn = conns.get(c.id ?? "");
      if (!conn) return Promise.resolve("no such connection");
      return Promise.resolve(conn.ended === undefined ? "open" : `closed ${conn.ended}`);
    }
    default:
      return Promise.resolve(`unknown op ${c.op}`);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  const c = JSON.parse(line) as Cmd;
  void handle(c).then((result) => process.stdout.write(JSON.stringify({ seq: c.seq, result }) + "\n"));
});
rl.on("close", () => process.exit(0));
