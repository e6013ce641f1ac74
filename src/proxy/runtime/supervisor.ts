/**
 * Agent side of the proxy process: starts it in the node's network
 * namespace, pushes policy snapshots (and waits for the proxy to hold them
 * before the kernel starts redirecting), relays its L7 events and DNS
 * answers, and restarts it when it dies.
 *
 *   Agent --push(snapshot)--> ProxySupervisor --IPC--> proxy process (ip netns exec NODE node main.js)
 *   Agent <--onL7 / onDnsAnswer-- ProxySupervisor <--IPC--
 *
 * What a push sends costs what changed: the ipcache's exact addresses go as a
 * full table to a new process and as deltas of the HostTable's journal after
 * that (hosts-sync.ts); the rest of the snapshot (endpoints, L7 rules,
 * prefixes: small) only when its content changed. Pushes run one at a time.
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
import { IpcDrops } from "../../abi/ipc-drops.js";
import { MembraneError } from "../../errors.js";
import type { HostTableView } from "../../ipcache/hosts.js";
import type { L7Event } from "../types.js";
import { planHosts, type HeldHosts } from "./hosts-sync.js";
import { PROXY_NODE_FLAGS } from "./node-flags.js";
import {
  fromProxy,
  type DnsForgetPair,
  type FromProxy,
  type L7Flow,
  type ProxyConfig,
  type ProxyDrop,
  type ToProxy,
} from "./protocol.js";
import { DnsRelay, type DnsRelayParams } from "./supervisor-dns.js";
import type { Addr, ProxySnapshot } from "./table.js";
import { stopChild } from "./stop-child.js";

/** What the agent pushes: a snapshot, and the ipcache's exact addresses (a live view, never copied whole). */
export interface ProxyPush extends ProxySnapshot {
  /** Absent: `ipcache` holds every address (the proxy's host table is emptied). */
  readonly hosts?: HostTableView;
}

/** What pushes sent the proxy processes (for status and tests). */
export interface ProxyPushStats {
  /** Snapshot messages (endpoints, L7 rules, prefixes). */
  snapshots: number;
  /** Whole host tables, and the deltas. */
  hostsFull: number;
  hostsDeltas: number;
  /** Deltas the proxy refused (it held another revision): each followed by a full table. */
  hostsRefused: number;
  /** Address entries sent, full tables and deltas together, and the messages that carried them. */
  hostEntries: number;
  hostMessages: number;
}

/** The proxy's answer to hosts messages; `error`: the content itself is malformed (hosts-wire.ts). */
interface HostsAck {
  readonly ok: boolean;
  readonly error?: string;
}

/** What the running process acknowledged last: the snapshot's content hash (without the version), its hosts. */
interface HeldState {
  readonly child: ChildProcess;
  content?: string;
  /** The arrays whose content that is: the agent hands the same arrays when they did not change. */
  sent?: Pick<ProxySnapshot, "ipcache" | "endpoints" | "l7" | "lb">;
  hosts?: HeldHosts;
  /** A table (at a revision) the process refused as malformed, and why: not sent again. */
  refused?: { readonly table: HostTableView; readonly to: number; readonly error: string };
}

export interface ProxySupervisorParams {
  readonly netns?: string;
  /** Group the proxy runs as (the kernel's `meta skgid`). */
  readonly gid: number;
  readonly config: ProxyConfig;
  readonly logger: Logger;
  readonly onL7: (event: L7Event, src: Addr, dst: Addr) => void;
  /** Puts the answer's addresses into policy and the kernel; resolves when they are enforced. */
  readonly onDnsAnswer: DnsRelayParams["onDnsAnswer"];
  readonly dnsHeldUntil?: NonNullable<DnsRelayParams["dnsHeldUntil"]>;
  readonly startTimeoutMs?: number;
  /**
   * true: the process reported ready and holds the latest snapshot (the kernel may send it
   * connections); false: it exited (a restart follows unless stopping).
   */
  readonly onRunning?: (running: boolean) => void;
  /** Where what the process sent malformed is counted (ProxyWorkers: one for all workers); its own when absent. */
  readonly drops?: IpcDrops<ProxyDrop>;
}

export class ProxySupervisor {
  private child: ChildProcess | undefined;
  private stopping = false;
  private last: ProxyPush | undefined;
  private readonly acks = new Map<number, () => void>();
  private readonly hostAcks = new Map<number, (r: HostsAck) => void>();
  private readonly probes = new Map<number, (identity: number | undefined) => void>();
  private nextProbe = 1;
  private restarts = 0;
  /** Pushes in order: the next starts when the previous is done. */
  private queue: Promise<void> = Promise.resolve();
  private held: HeldState | undefined;
  /** The process that reported ready, and the one reported live (ready and holding the latest snapshot). */
  private ready: ChildProcess | undefined;
  private live: ChildProcess | undefined;
  private readonly counts: ProxyPushStats = {
    snapshots: 0,
    hostsFull: 0,
    hostsDeltas: 0,
    hostsRefused: 0,
    hostEntries: 0,
    hostMessages: 0,
  };

  private readonly dns: DnsRelay;
  private readonly drops: IpcDrops<ProxyDrop>;

  constructor(private readonly p: ProxySupervisorParams) {
    this.dns = new DnsRelay(p, (m) => this.send(m));
    this.drops = p.drops ?? new IpcDrops("proxy", p.logger);
  }

  /** What the process sent that was dropped as malformed, by reason (protocol.ts fromProxy). */
  get dropped(): Readonly<Partial<Record<ProxyDrop, number>>> {
    return this.drops.view();
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  /** The proxy process id (the `ip netns exec` wrapper execs into it), while running. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    const script = fileURLToPath(new URL("./main.js", import.meta.url));
    const argv = [process.execPath, ...PROXY_NODE_FLAGS, script, JSON.stringify(this.p.config)];
    const [cmd, ...args] = this.p.netns ? ["ip", "netns", "exec", this.p.netns, ...argv] : argv;
    const child = spawn(cmd as string, args, {
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      gid: this.p.gid,
    });
    this.child = child;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(failed("it did not report ready in time")),
        this.p.startTimeoutMs ?? 30_000,
      );
      child.on("message", (raw: unknown) => {
        const m = fromProxy(raw, (why) => this.drops.add(why));
        if (!m) return;
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
      // The process that would hold them is gone; its successor gets the whole table.
      for (const done of this.hostAcks.values()) done({ ok: true });
      this.hostAcks.clear();
      for (const done of this.probes.values()) done(undefined);
      this.probes.clear();
      this.dns.gone();
      if (this.stopping) return;
      if (this.live === child) this.p.onRunning?.(false);
      this.live = undefined;
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
    this.ready = child;
    if (this.last) await this.push(this.last);
    this.reportLive(child);
  }

  /** A ready process that holds the latest snapshot is reported once (a failed first push: at the next one). */
  private reportLive(child: ChildProcess): void {
    if (this.child !== child || this.ready !== child || this.live === child || this.stopping) return;
    this.live = child;
    this.p.onRunning?.(true);
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
    } else if (m.type === "hosts-ack") {
      this.hostAcks.get(m.to)?.(m.error !== undefined ? { ok: m.ok, error: m.error } : { ok: m.ok });
      this.hostAcks.delete(m.to);
    } else if (m.type === "identity") {
      this.probes.get(m.id)?.(m.identity);
      this.probes.delete(m.id);
    } else if (m.type === "l7") this.l7(m);
    else if (m.type === "l7-batch") for (const f of m.events) this.l7(f);
    else if (m.type === "dns-answer" || m.type === "dns-seen" || m.type === "dns-forgot")
      this.dns.onMessage(m);
  }

  private l7(f: L7Flow): void {
    try {
      this.p.onL7(f.event, f.src, f.dst);
    } catch (e) {
      // A flow consumer's failure loses the flow, never the agent.
      this.p.logger.warn({ err: (e as Error).message }, "L7 event dropped");
    }
  }

  private send(m: ToProxy): void {
    const c = this.child;
    if (c?.connected) c.send(m);
  }

  /** What pushes sent so far (a copy). */
  get stats(): ProxyPushStats {
    return { ...this.counts };
  }

  /**
   * Hands the proxy a new policy snapshot; resolves once it holds it (or
   * at once when it is not running: it gets the latest one when it starts).
   */
  push(snapshot: ProxyPush): Promise<void> {
    this.last = snapshot;
    const run = this.queue.then(() => this.pushNow(snapshot));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async pushNow(snapshot: ProxyPush): Promise<void> {
    const c = this.child;
    if (!c?.connected) return;
    if (this.held?.child !== c) this.held = { child: c };
    const held = this.held;
    await this.pushHosts(held, snapshot.hosts);
    // The process died meanwhile: its successor gets the latest snapshot when it starts.
    if (this.child !== c) return;
    // Most enforces change nothing else the proxy holds: skip the copy (the same process already has it).
    const { version, ipcache, endpoints, l7, lb } = snapshot;
    // The very arrays sent last (never changed in place: desired.ts, proxy-snapshot.ts): not even hashed.
    const sent = held.sent;
    if (sent?.ipcache === ipcache && sent.endpoints === endpoints && sent.l7 === l7 && sent.lb === lb)
      return this.reportLive(c);
    const content = createHash("sha256")
      .update(JSON.stringify([ipcache, endpoints, l7, lb ?? []]))
      .digest("hex");
    if (held.content !== content) {
      await this.await(this.acks, version, "the policy snapshot", () => {
        this.counts.snapshots++;
        this.send({ type: "snapshot", snapshot: { version, ipcache, endpoints, l7, ...(lb ? { lb } : {}) } });
      });
      held.content = content;
    }
    held.sent = { ipcache, endpoints, l7, ...(lb ? { lb } : {}) };
    this.reportLive(c);
  }

  /** Brings the process's host table to `table`'s revision: nothing, a delta, or (refused, new process) the whole. */
  private async pushHosts(held: HeldState, table: HostTableView | undefined): Promise<void> {
    // Content this process refused as malformed is not sent again: it keeps the table it holds.
    const refused = held.refused;
    if (table && refused?.table === table && refused.to === table.revision) throw hostsRefused(refused.error);
    for (const forceFull of [false, true]) {
      const plan = planHosts(table, held.hosts, forceFull);
      if (plan.kind === "none") return;
      const r = await this.await(this.hostAcks, plan.to, "the ipcache's addresses", () => {
        for (const m of plan.messages) this.send(m);
        if (plan.kind === "full") this.counts.hostsFull++;
        else this.counts.hostsDeltas++;
        this.counts.hostEntries += plan.entries;
        this.counts.hostMessages += plan.messages.length;
      });
      if (r.ok) {
        if (table) held.hosts = { table, revision: plan.to };
        else delete held.hosts;
        return;
      }
      if (plan.kind === "full") {
        if (r.error === undefined || !table) break;
        held.refused = { table, to: plan.to, error: r.error };
        this.p.logger.error(
          { revision: plan.to, reason: r.error },
          "the L7 proxy refused the ipcache's addresses; it keeps its previous table, and this content is not sent again",
        );
        throw hostsRefused(r.error);
      }
      // The process holds another revision than we think (an ack lost to a timeout), or refused the
      // delta's content: send it all.
      this.counts.hostsRefused++;
    }
    throw failed("it refused the ipcache's addresses");
  }

  /** Sends, then waits for the reply registered under `key` (5 s at most). */
  private await<T>(
    waiting: Map<number, (v: T) => void>,
    key: number,
    what: string,
    send: () => void,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(key);
        reject(failed(`it did not take ${what} within 5 s`));
      }, 5000);
      waiting.set(key, (v) => {
        clearTimeout(timer);
        resolve(v);
      });
      send();
    });
  }

  /** The identity the proxy process gives an address now (diagnostics); undefined when it is not running. */
  async identityOf(address: string): Promise<number | undefined> {
    if (!this.child?.connected) return undefined;
    const id = this.nextProbe++;
    return this.await(this.probes, id, "a lookup", () => this.send({ type: "identity-of", id, address }));
  }

  /** Withdraws (name, ip) pairs from the process's held DNS answers; resolves at once when it is not running. */
  forgetDns(pairs: readonly DnsForgetPair[]): Promise<void> {
    return this.child?.connected ? this.dns.forget(pairs) : Promise.resolve();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    this.child = undefined;
    if (c) await stopChild(c);
  }
}

/** A host table the proxy refused as malformed (its reason: which part and entry). */
function hostsRefused(reason: string): MembraneError {
  return failed(`it refused the ipcache's addresses: ${reason}`);
}

function failed(why: string): MembraneError {
  return new MembraneError("PROXY_FAILED", `Cannot run the L7 proxy: ${why}`, {
    hint: "Check the agent's log; the proxy needs root (conntrack netlink) in the node's namespace.",
  });
}
