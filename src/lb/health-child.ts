/**
 * The health check process (started by health-server.ts as `nsenter --net=<node netns> node
 * health-child.js UID GID`, or forked when the agent runs in the node's namespace; it drops to
 * UID/GID, nobody by default, before anything else): serves every Service's healthCheckNodePort
 * in the node's namespace without root, and answers as the agent last said.
 *
 *   agent --IPC {sync, checks, healthy}--> ports opened / closed, answers updated
 *         <--IPC {synced, failed}--------
 *   any HTTP request on a port --> kube-proxy's status and JSON (health-answer.ts)
 *
 * Outside bytes are parsed here (Node's HTTP parser, small headers, short timeouts, few
 * connections, no body read), in a process with no privilege. It exits when the agent goes.
 */
import http from "node:http";
import net from "node:net";
import { healthAnswer, isHealthSync, type HealthCheck, type HealthSync, type HealthSynced } from "./health-answer.js"; // prettier-ignore

/** Connections one health check port holds open at once. */
const MAX_CONNECTIONS = 64;

interface Served {
  check: HealthCheck;
  readonly server: net.Server;
  readonly sockets: Set<net.Socket>;
}

const served = new Map<string, Served>();
let healthy = false;

function listen(port: number): Promise<net.Server> {
  const on = (host: string, ipv6Only?: boolean): Promise<net.Server> =>
    new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once("error", reject);
      s.listen({ port, host, ...(ipv6Only !== undefined ? { ipv6Only } : {}) }, () => resolve(s));
    });
  // Both families on one socket; a namespace without IPv6: IPv4 alone.
  return on("::", false).catch((e: NodeJS.ErrnoException) =>
    e.code === "EAFNOSUPPORT" || e.code === "EADDRNOTAVAIL" ? on("0.0.0.0") : Promise.reject(e),
  );
}

async function open(key: string, c: HealthCheck): Promise<void> {
  const server = await listen(c.port);
  const s: Served = { check: c, server, sockets: new Set() };
  const answer = http.createServer(
    { maxHeaderSize: 4096, requestTimeout: 5000, headersTimeout: 5000, keepAliveTimeout: 5000 },
    (_req, res) => {
      const a = healthAnswer(s.check, healthy);
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
  server.on("error", () => undefined); // a listening socket's late error: the next sync reopens
  served.set(key, s);
}

function close(key: string, s: Served): void {
  served.delete(key);
  s.server.close();
  for (const sock of s.sockets) sock.destroy();
}

async function sync(m: HealthSync): Promise<HealthSynced> {
  healthy = m.healthy;
  const want = new Map(m.checks.map((c) => [`${c.namespace}/${c.name}`, c]));
  for (const [key, s] of served) {
    const c = want.get(key);
    if (c !== undefined && c.port === s.check.port) s.check = c;
    else close(key, s);
  }
  const failed: { check: HealthCheck; why: string }[] = [];
  await Promise.all(
    [...want]
      .filter(([key]) => !served.has(key))
      .map(([key, c]) =>
        open(key, c).catch((e: unknown) => {
          failed.push({ check: c, why: e instanceof Error ? e.message : String(e) });
        }),
      ),
  );
  return { type: "synced", seq: m.seq, failed };
}

if (process.send === undefined) process.exit(2);
// Least privilege: started as root (only to enter the node's namespace; the code is loaded), it
// becomes the unprivileged user before it reads a byte from outside: no capability, no groups.
const [uid, gid] = process.argv.slice(2).map(Number) as [number, number];
if (process.getuid?.() === 0) {
  if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid === 0) process.exit(2);
  process.setgroups?.([gid]);
  process.setgid?.(gid);
  process.setuid?.(uid);
  if (process.getuid?.() !== uid || process.getgid?.() !== gid) process.exit(3);
}
// One sync at a time, in order: a later one sees what the earlier one opened.
let chain: Promise<void> = Promise.resolve();
process.on("message", (m: unknown) => {
  if (!isHealthSync(m)) return;
  chain = chain.then(async () => {
    process.send?.(await sync(m));
  });
});
process.on("disconnect", () => process.exit(0));
process.send({ type: "ready" });
