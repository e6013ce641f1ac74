/**
 * Agent side of the tunnel process: starts it in the node's namespace as the tunnel group, hands
 * it this node's SVID and the peers, answers its questions (which identity is this pod address,
 * and that identity's SVID), notes where the connections it carries come from, and restarts it when it dies (meanwhile redirected connections find
 * no listener and are reset: fail closed).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";
import { fromTunnel, type PeerStats, type ToTunnel, type TunnelConfig, type TunnelOrigin, type TunnelPeer, type WireCreds } from "./wire.js"; // prettier-ignore
import { stopChild } from "../../proxy/runtime/stop-child.js";

export interface TunnelSupervisorParams {
  readonly netns?: string;
  readonly gid: number;
  readonly config: TunnelConfig;
  readonly logger: Logger;
  /** This node's SVID (asked anew at every start). */
  readonly nodeCreds: () => Promise<WireCreds>;
  /** The identity of a local pod address and its SVID; rejects naming why not. */
  readonly source: (ip: string) => Promise<{ identity: number; creds: WireCreds }>;
  /** Whether `node` hosts an endpoint of `identity` (the cluster's ipcache): a peer speaks only for its own pods. */
  readonly hosts: (node: string, identity: number) => boolean;
  /** A connection the tunnel is about to carry to a local pod (a claim: origins.ts checks it). */
  readonly origin?: (o: TunnelOrigin) => void;
}

export class TunnelSupervisor {
  private child: ChildProcess | undefined;
  private stopping = false;
  private restarts = 0;
  private peers: readonly TunnelPeer[] = [];
  private nextStatus = 1;
  private readonly statuses = new Map<number, (p: readonly PeerStats[]) => void>();
  lastError: string | undefined;

  constructor(private readonly p: TunnelSupervisorParams) {}

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
      const timer = setTimeout(() => reject(failed("it did not report ready in 30 s")), 30_000);
      child.on("message", (raw: unknown) => {
        const m = fromTunnel(raw);
        if (!m) return this.p.logger.warn("malformed message from the tunnel dropped");
        if (m.type === "ready" || m.type === "fatal") {
          clearTimeout(timer);
          if (m.type === "ready") resolve();
          else reject(failed(m.message));
        } else if (m.type === "source?") {
          this.p.source(m.ip).then(
            (r) => this.send({ type: "source", id: m.id, identity: r.identity, creds: r.creds }),
            (e: unknown) => this.send({ type: "source", id: m.id, error: (e as Error).message }),
          );
        } else if (m.type === "hosts?") {
          let ok = false;
          try {
            ok = this.p.hosts(m.node, m.identity);
          } catch (e) {
            this.p.logger.warn(
              { err: (e as Error).message },
              "mTLS tunnel: cannot tell which node hosts an identity",
            );
          }
          this.send({ type: "hosts", id: m.id, ok });
        } else if (m.type === "origin?") {
          const { type: _t, id, ...o } = m;
          this.p.origin?.(o);
          this.send({ type: "origin", id });
        } else if (m.type === "status") {
          this.statuses.get(m.id)?.(m.peers);
          this.statuses.delete(m.id);
        } else if (m.type === "refused") {
          this.lastError = `${m.from}: ${m.why}`;
          this.p.logger.warn({ from: m.from, why: m.why }, "mTLS tunnel refused a connection");
        }
      });
      child.once(
        "exit",
        (code, signal) => (clearTimeout(timer), reject(failed(`it exited (${signal ?? code})`))),
      );
      child.once("error", (e) => (clearTimeout(timer), reject(failed(e.message))));
    });
    child.on("exit", (code, signal) => {
      if (this.child !== child) return;
      this.child = undefined;
      for (const done of this.statuses.values()) done([]);
      this.statuses.clear();
      if (this.stopping) return;
      this.p.logger.error({ code, signal }, "mTLS tunnel process exited; restarting");
      const delay = Math.min(5000, 100 * 2 ** Math.min(this.restarts++, 6));
      setTimeout(() => void this.restart(), delay).unref();
    });
    try {
      this.send({ type: "init", node: await this.p.nodeCreds() });
      this.send({ type: "peers", peers: this.peers });
      await ready;
    } catch (e) {
      child.kill("SIGKILL");
      this.child = undefined;
      throw e;
    }
    this.restarts = 0;
  }

  private async restart(): Promise<void> {
    if (this.stopping || this.child) return;
    try {
      await this.start();
      this.p.logger.info("mTLS tunnel process restarted");
    } catch (e) {
      this.p.logger.error({ err: (e as Error).message }, "mTLS tunnel restart failed");
      const delay = Math.min(5000, 100 * 2 ** Math.min(this.restarts++, 6));
      setTimeout(() => void this.restart(), delay).unref();
    }
  }

  private send(m: ToTunnel): void {
    const c = this.child;
    if (c?.connected) c.send(m);
  }

  setPeers(peers: readonly TunnelPeer[]): void {
    this.peers = peers;
    this.send({ type: "peers", peers });
  }

  setNodeCreds(c: WireCreds): void {
    this.send({ type: "node-svid", node: c });
  }

  /** Per-peer counters from the process ([] when it is not running or does not answer in 2 s). */
  stats(): Promise<readonly PeerStats[]> {
    if (!this.child?.connected) return Promise.resolve([]);
    const id = this.nextStatus++;
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.statuses.delete(id), resolve([])), 2000);
      this.statuses.set(id, (p) => (clearTimeout(t), resolve(p)));
      this.send({ type: "status", id });
    });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    this.child = undefined;
    if (c) await stopChild(c);
  }
}

function failed(why: string): MembraneError {
  return new MembraneError("ENCRYPTION_FAILED", `Cannot run the mTLS node tunnel: ${why}`, {
    hint: "Check the agent's log; the tunnel needs dist/bin/membrane-sockmark.node (npm run build) and root to start",
  });
}
