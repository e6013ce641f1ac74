/**
 * The sockets of the cross-node handshake, in the node's network namespace: a listener on the
 * handshake port and outgoing connections to peer agents.
 *
 *   agent in the node namespace: node:net directly
 *   agent outside it (--node-netns): one child, `nsenter --net=<netns> node peer-net-child.js`,
 *     that listens and connects there and hands each socket over the IPC channel (the agent then
 *     owns the descriptor; the child keeps none)
 */
import { fork, type ChildProcess } from "node:child_process";
import { connect, createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import { netnsFile } from "../spiffe/endpoint-socket.js";

export interface PeerNet {
  /** The handshake port's listener (the caller adds a "connection" handler). */
  readonly server: Server;
  /** A connected TCP socket to host:port, or a rejection naming why. */
  connect(host: string, port: number, timeoutMs: number): Promise<Socket>;
  close(): void;
}

const START_TIMEOUT_MS = 15_000;
const failed = (why: string): MembraneError =>
  new MembraneError("AUTH_SETUP_FAILED", `Cannot open the handshake port: ${why}`, {
    hint: "another process may hold the port (--auth-port), or the node namespace is gone",
  });

/** Listens on `port` (all addresses of the namespace) and connects from there. */
export async function openPeerNet(port: number, netns: string | undefined): Promise<PeerNet> {
  if (netns === undefined) return direct(port);
  const child = fileURLToPath(new URL("./peer-net-child.js", import.meta.url));
  const cp = fork(child, [JSON.stringify({ port })], {
    execPath: "nsenter",
    execArgv: [`--net=${netnsFile(netns)}`, "--", process.execPath],
    stdio: ["ignore", "ignore", "pipe", "ipc"],
    env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
  });
  let err = "";
  cp.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-400)));
  const server = await new Promise<Server>((resolve, reject) => {
    const t = setTimeout(() => {
      cp.kill("SIGKILL");
      reject(failed("the helper did not start in time"));
    }, START_TIMEOUT_MS);
    cp.once("message", (m: { op?: string; error?: string }, handle: unknown) => {
      clearTimeout(t);
      if (m.op === "listening" && handle) resolve(handle as Server);
      else reject(failed(m.error ?? "no listening socket came back"));
    });
    cp.once("exit", (code) => {
      clearTimeout(t);
      reject(failed(`the helper exited (${code}) ${err.trim()}`));
    });
  });
  return new ChildNet(cp, server);
}

class ChildNet implements PeerNet {
  private seq = 0;
  private readonly waiting = new Map<number, { ok: (s: Socket) => void; no: (e: Error) => void }>();
  constructor(
    private readonly cp: ChildProcess,
    readonly server: Server,
  ) {
    cp.on("message", (m: { op?: string; id?: number; error?: string }, handle: unknown) => {
      const w = typeof m.id === "number" ? this.waiting.get(m.id) : undefined;
      if (!w || m.id === undefined) return;
      this.waiting.delete(m.id);
      if (m.op === "connected" && handle) w.ok(handle as Socket);
      else w.no(new Error(m.error ?? "no socket came back"));
    });
    cp.on("exit", () => {
      for (const w of this.waiting.values()) w.no(new Error("the handshake helper exited"));
      this.waiting.clear();
    });
  }

  connect(host: string, port: number, timeoutMs: number): Promise<Socket> {
    if (this.cp.exitCode !== null || !this.cp.connected) return Promise.reject(new Error("the handshake helper is gone")); // prettier-ignore
    const id = ++this.seq;
    return new Promise<Socket>((ok, no) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        no(new Error(`no connection within ${timeoutMs} ms`));
      }, timeoutMs + 500);
      this.waiting.set(id, {
        ok: (s) => {
          clearTimeout(t);
          s.resume();
          ok(s);
        },
        no: (e) => {
          clearTimeout(t);
          no(e);
        },
      });
      this.cp.send({ op: "connect", id, host, port, timeoutMs });
    });
  }

  close(): void {
    this.server.close();
    if (this.cp.connected) this.cp.disconnect();
    this.cp.kill();
  }
}

async function direct(port: number): Promise<PeerNet> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(failed(e.message)));
    server.listen({ port, host: "::", ipv6Only: false }, () => resolve());
  });
  return {
    server,
    connect: (host, p, timeoutMs) =>
      new Promise<Socket>((ok, no) => {
        const s = connect({ host, port: p });
        const t = setTimeout(() => s.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
        s.once("connect", () => {
          clearTimeout(t);
          ok(s);
        });
        s.once("error", (e) => {
          clearTimeout(t);
          no(e);
        });
      }),
    close: () => server.close(),
  };
}
