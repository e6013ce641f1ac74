/**
 * The tunnel process's side of its privileged broker (broker.ts): forks it while still root,
 * then asks it for original destinations and marked sockets, each answer matched by id and
 * bounded by a timeout (an answer that never comes fails the one connection, nothing else).
 */
import { fork, type ChildProcess } from "node:child_process";
import type net from "node:net";
import { fileURLToPath } from "node:url";

export interface Addr {
  readonly address: string;
  readonly port: number;
}

interface Answer {
  readonly address?: string;
  readonly port?: number;
  readonly error?: string;
}

/** A marked socket the broker holds, bound to `port`; take() hands it over, unconnected. */
export interface MarkedSocket {
  readonly port: number;
  take(): Promise<net.Socket>;
}

export class BrokerClient {
  private next = 1;
  private readonly waiting = new Map<number, (a: Answer, h?: net.Socket) => void>();

  private constructor(private readonly child: ChildProcess) {
    child.on("message", (m: unknown, h?: unknown) => {
      const a = (typeof m === "object" && m !== null ? m : {}) as Answer & { id?: unknown };
      if (typeof a.id !== "number") return;
      const done = this.waiting.get(a.id);
      this.waiting.delete(a.id);
      done?.(a, h as net.Socket | undefined);
    });
  }

  /** Forks the broker (call while root); resolves once it is ready. `onExit`: it died. */
  static async start(onExit: () => void): Promise<BrokerClient> {
    const child = fork(fileURLToPath(new URL("./broker.js", import.meta.url)), [], {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    });
    await new Promise<void>((resolve, reject) => {
      child.once("exit", (code) => reject(new Error(`the tunnel's broker exited (${code})`)));
      const first = (m: { ready?: boolean; fatal?: string }): void => {
        child.off("message", first);
        if (m.ready) resolve();
        else reject(new Error(`the tunnel's broker: ${m.fatal ?? "did not start"}`));
      };
      child.on("message", first);
    });
    child.on("exit", onExit);
    return new BrokerClient(child);
  }

  private ask(req: object, timeoutMs = 2000): Promise<{ a: Answer; h?: net.Socket }> {
    return new Promise((resolve) => {
      const id = this.next++;
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        resolve({ a: { error: "the broker did not answer" } });
      }, timeoutMs);
      this.waiting.set(id, (a, h) => {
        clearTimeout(timer);
        resolve(h ? { a, h } : { a });
      });
      this.child.send({ ...req, id });
    });
  }

  /** The original destination of a connection the kernel redirected here; undefined if unknown. */
  async originalDst(local: Addr, remote: Addr): Promise<Addr | undefined> {
    const { a } = await this.ask({ op: "ct", local, remote });
    return typeof a.address === "string" && typeof a.port === "number"
      ? { address: a.address, port: a.port }
      : undefined;
  }

  /**
   * A new TCP socket whose packets carry `mark` (the source identity), bound to its local `port`
   * (any address: the route picks the source when it connects), held by the broker until `take`
   * hands it over; connect it in the same turn of the event loop (see broker.ts).
   */
  async markedSocket(family: 4 | 6, mark: number): Promise<MarkedSocket> {
    const { a } = await this.ask({ op: "sock", family, mark });
    const port = a.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new Error(`no marked socket: ${a.error ?? "the broker gave no local port"}`);
    return {
      port,
      take: async () => {
        const { a: t, h } = await this.ask({ op: "take", port });
        if (!h) throw new Error(`no marked socket: ${t.error ?? "none sent"}`);
        return h;
      },
    };
  }
}
