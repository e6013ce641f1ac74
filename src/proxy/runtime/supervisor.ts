/**
 * Agent side of the proxy process: starts it in the node's network
 * namespace, pushes policy snapshots (and waits for the proxy to hold them
 * before the kernel starts redirecting), relays its L7 events and DNS
 * answers, and restarts it when it dies.
 *
 *   Agent --push(snapshot)--> ProxySupervisor --IPC--> proxy process (ip netns exec NODE node main.js)
 *   Agent <--onL7 / onDnsAnswer-- ProxySupervisor <--IPC--
 *
 * Why a process and not the agent's own sockets: Node cannot enter another
 * network namespace, and the proxy's listeners and upstream sockets must
 * live in the node's; a separate process also keeps a proxy crash away from
 * the agent (Cilium runs Envoy apart for the same reason). While the proxy is
 * down, redirected connections find no listener and are reset: fail closed.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";
import type { L7Event } from "../types.js";
import { fromProxy, type FromProxy, type ProxyConfig, type ToProxy } from "./protocol.js";
import type { Addr, ProxySnapshot } from "./table.js";

export interface ProxySupervisorParams {
  readonly netns?: string;
  /** Group the proxy runs as (the kernel's `meta skgid`). */
  readonly gid: number;
  readonly config: ProxyConfig;
  readonly logger: Logger;
  readonly onL7: (event: L7Event, src: Addr, dst: Addr) => void;
  /** Puts the answer's addresses into policy and the kernel; resolves when they are enforced. */
  readonly onDnsAnswer: (
    endpoint: string,
    name: string,
    ips: readonly string[],
    ttl: number,
  ) => Promise<void>;
  readonly startTimeoutMs?: number;
}

export class ProxySupervisor {
  private child: ChildProcess | undefined;
  private stopping = false;
  private last: ProxySnapshot | undefined;
  private readonly acks = new Map<number, () => void>();
  private restarts = 0;
  /** What the running process acknowledged last (hash of the content without the version). */
  private held: { child: ChildProcess; content: string } | undefined;

  constructor(private readonly p: ProxySupervisorParams) {}

  get running(): boolean {
    return this.child !== undefined;
  }

  /** The proxy process id (the `ip netns exec` wrapper execs into it), while running. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const script = fileURLToPath(new URL("./main.js", import.meta.url));
    const argv = [process.execPath, script, JSON.stringify(this.p.config)];
    const [cmd, ...args] = this.p.netns ? ["ip", "netns", "exec", this.p.netns, ...argv] : argv;
    const child = spawn(cmd as string, args, {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      gid: this.p.gid,
    });
    this.child = child;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failed("it did not report ready in time")),
        this.p.startTimeoutMs ?? 10_000,
      );
      child.on("message", (raw: unknown) => {
        const m = fromProxy(raw);
        if (!m) return this.p.logger.warn("malformed message from the proxy dropped");
        if (m.type === "ready") {
          clearTimeout(timer);
          resolve();
        } else if (m.type === "fatal") {
          clearTimeout(timer);
          reject(failed(m.message));
        } else this.onMessage(m);
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(failed(`it exited (${signal ?? code})`));
      });
      child.once("error", (e) => {
        clearTimeout(timer);
        reject(failed(e.message));
      });
    });
    child.on("exit", (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const done of this.acks.values()) done();
      this.acks.clear();
      if (this.stopping) return;
      this.p.logger.error({ code, signal }, "proxy process exited; restarting");
      const delay = Math.min(5000, 100 * 2 ** Math.min(this.restarts++, 6));
      setTimeout(() => void this.restart(), delay).unref();
    });
    try {
      await ready;
    } catch (e) {
      child.kill("SIGKILL");
      this.child = undefined;
      throw e;
    }
    this.restarts = 0;
    if (this.last) await this.push(this.last);
  }

  private async restart(): Promise<void> {
    if (this.stopping || this.child) return;
    try {
      await this.start();
      this.p.logger.info("proxy process restarted");
    } catch (e) {
      this.p.logger.error({ err: (e as Error).message }, "proxy restart failed");
      const delay = Math.min(5000, 100 * 2 ** Math.min(this.restarts++, 6));
      setTimeout(() => void this.restart(), delay).unref();
    }
  }

  private onMessage(m: FromProxy): void {
    if (m.type === "ack") {
      this.acks.get(m.version)?.();
      this.acks.delete(m.version);
    } else if (m.type === "l7") {
      try {
        this.p.onL7(m.event, m.src, m.dst);
      } catch (e) {
        // A flow consumer's failure loses the flow, never the agent.
        this.p.logger.warn({ err: (e as Error).message }, "L7 event dropped");
      }
    } else if (m.type === "dns-answer") {
      this.p.onDnsAnswer(m.endpoint, m.name, m.ips, m.ttl).then(
        () => this.send({ type: "dns-done", id: m.id, ok: true }),
        (e: unknown) => {
          this.p.logger.warn({ name: m.name, err: (e as Error).message }, "DNS answer not enforced");
          this.send({ type: "dns-done", id: m.id, ok: false });
        },
      );
    }
  }

  private send(m: ToProxy): void {
    const c = this.child;
    if (c?.connected) c.send(m);
  }

  /**
   * Hands the proxy a new policy snapshot; resolves once it holds it (or
   * at once when it is not running: it gets the latest one when it starts).
   */
  async push(snapshot: ProxySnapshot): Promise<void> {
    this.last = snapshot;
    const c = this.child;
    if (!c?.connected) return;
    // Most enforces change nothing the proxy holds: skip the copy (the same process already has it).
    const content = createHash("sha256")
      .update(JSON.stringify([snapshot.ipcache, snapshot.endpoints, snapshot.l7]))
      .digest("hex");
    if (this.held?.child === c && this.held.content === content) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.acks.delete(snapshot.version);
        reject(failed("it did not take the policy snapshot within 5 s"));
      }, 5000);
      this.acks.set(snapshot.version, () => {
        clearTimeout(timer);
        resolve();
      });
      this.send({ type: "snapshot", snapshot });
    });
    this.held = { child: c, content };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    this.child = undefined;
    if (!c) return;
    const exited = new Promise<void>((r) => c.once("exit", () => r()));
    c.kill("SIGTERM");
    const t = setTimeout(() => c.kill("SIGKILL"), 2000);
    await exited;
    clearTimeout(t);
  }
}

function failed(why: string): MembraneError {
  return new MembraneError("PROXY_FAILED", `Cannot run the L7 proxy: ${why}`, {
    hint: "Check the agent's log; the proxy needs root (conntrack netlink) in the node's namespace.",
  });
}
