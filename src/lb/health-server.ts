/**
 * Service health checks, as kube-proxy serves them: for every LoadBalancer Service with
 * externalTrafficPolicy Local, an HTTP server on its healthCheckNodePort on this node, which
 * tells an outside load balancer whether to send the Service's traffic here.
 *
 *   sync([{namespace, name, port, localEndpoints}], healthy)
 *     --IPC--> the health check process (health-child.ts) in the node's namespace (nsenter
 *              --net), which becomes nobody before it serves (started at the first check, again
 *              after it died) --> ports opened / closed, answers updated
 *     any request on a port --> 200 when the node has local ready backends and its services'
 *              table is in place, else 503, with kube-proxy's JSON (health-answer.ts)
 *
 * Least privilege: the process that parses outside bytes has no root and no capability; the
 * node port range is above 1024, so binding needs none. No check: no process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { HealthCheck, HealthSync, HealthSynced } from "./health-answer.js";

export interface HealthServersParams {
  /** The node's network namespace (a name under /run/netns or a path); absent: this process's. */
  readonly netns?: string;
  /** A port that could not be served (taken, process gone): logged, tried again at the next sync. */
  readonly onError?: (check: HealthCheck, why: string) => void;
  /** The unprivileged user and group the process runs as. Default nobody/nogroup (65534). */
  readonly uid?: number;
  readonly gid?: number;
}

/** A sync that failed is not tried again unchanged before this (each enforce calls sync). */
const RETRY_MS = 10_000;
const START_TIMEOUT_MS = 15_000; // a safety net: nsenter + node start in well under a second

/** The namespace file of `netns` (a name under /run/netns, or a path). */
const netnsFile = (netns: string): string => (netns.startsWith("/") ? netns : `/run/netns/${netns}`);

export class HealthServers {
  private child: ChildProcess | undefined;
  private starting: Promise<ChildProcess> | undefined;
  private seq = 0;
  private readonly waiting = new Map<number, (m: HealthSynced | undefined) => void>();
  private lastPorts = 0;
  private lastSaid: string | undefined;
  private failed: { readonly said: string; readonly at: number } | undefined;
  private stopped = false;

  constructor(private readonly p: HealthServersParams = {}) {}

  /** Ports served (or asked for) by the last sync. */
  get ports(): number {
    return this.lastPorts;
  }

  /**
   * Serves exactly `checks` (counts updated, new ports opened, others closed); `healthy`: the
   * services' table is as desired (false: every answer 503). Never throws: a port that cannot be
   * served goes to onError.
   */
  async sync(checks: readonly HealthCheck[], healthy: boolean): Promise<void> {
    if (this.stopped || (checks.length === 0 && this.child === undefined)) return;
    // Every enforce calls this: what the process already serves is not sent again.
    const said = JSON.stringify([checks, healthy]);
    if (this.child !== undefined && said === this.lastSaid) return;
    // The same request failed a moment ago (port taken, no nsenter): not retried on every enforce.
    if (said === this.failed?.said && Date.now() - this.failed.at < RETRY_MS) return;
    this.lastPorts = checks.length;
    let child: ChildProcess;
    try {
      child = this.child ?? (await (this.starting ??= this.start()));
    } catch (e) {
      for (const c of checks) this.p.onError?.(c, e instanceof Error ? e.message : String(e));
      this.failed = { said, at: Date.now() };
      return;
    }
    const seq = ++this.seq;
    const msg: HealthSync = { type: "sync", seq, checks, healthy };
    const answer = await new Promise<HealthSynced | undefined>((resolve) => {
      this.waiting.set(seq, resolve);
      child.send(msg, (err) => {
        if (err) this.settle(seq, undefined);
      });
    });
    if (!answer) for (const c of checks) this.p.onError?.(c, "the health check process is gone");
    else for (const f of answer.failed) this.p.onError?.(f.check, f.why);
    // A failed port is tried again at the next sync.
    this.lastSaid = answer && answer.failed.length === 0 ? said : undefined;
    this.failed = this.lastSaid === undefined ? { said, at: Date.now() } : undefined;
  }

  /** Agent stop: the process ends, its ports close. */
  stop(): void {
    this.stopped = true;
    this.child?.kill("SIGTERM");
  }

  private settle(seq: number, m: HealthSynced | undefined): void {
    const w = this.waiting.get(seq);
    this.waiting.delete(seq);
    w?.(m);
  }

  private start(): Promise<ChildProcess> {
    const main = fileURLToPath(new URL("./health-child.js", import.meta.url));
    const uid = String(this.p.uid ?? 65534);
    const gid = String(this.p.gid ?? 65534);
    // The child drops to uid/gid itself once its code is loaded (the checkout may not be readable by them).
    const cp =
      this.p.netns !== undefined
        ? fork(main, [uid, gid], {
            execPath: "nsenter",
            execArgv: [`--net=${netnsFile(this.p.netns)}`, "--", process.execPath],
            stdio: ["ignore", "ignore", "inherit", "ipc"],
            env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin" },
          })
        : fork(main, [uid, gid], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
    return new Promise<ChildProcess>((resolve, reject) => {
      const t = setTimeout(() => {
        cp.kill("SIGKILL");
        reject(new Error("the health check process did not start in time"));
      }, START_TIMEOUT_MS);
      cp.on("message", (m: { type?: string; seq?: number }) => {
        if (m.type === "ready") {
          clearTimeout(t);
          this.child = cp;
          this.starting = undefined;
          resolve(cp);
        } else if (m.type === "synced" && typeof m.seq === "number") this.settle(m.seq, m as HealthSynced);
      });
      cp.on("error", (e) => {
        clearTimeout(t);
        this.starting = undefined;
        reject(e);
      });
      cp.on("exit", (code, signal) => {
        clearTimeout(t);
        if (this.child === cp) this.child = undefined;
        this.starting = undefined;
        reject(new Error(`the health check process exited (${code ?? signal ?? "?"})`));
        for (const seq of [...this.waiting.keys()]) this.settle(seq, undefined);
      });
    });
  }
}
