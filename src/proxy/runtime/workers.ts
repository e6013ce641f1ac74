/**
 * One proxy process per core behind the same redirect: N supervisors
 * (supervisor.ts), worker i listening on `l7Port + i` and `dnsPort + i`,
 * each in the proxy group (the kernel's `meta skgid` rules hold for all of
 * them) and each dropping root for the proxy user once its sockets are bound.
 *
 *   Agent --push(snapshot)--> ProxyWorkers --push--> worker 0 .. N-1 (every one holds every snapshot)
 *   Agent <--target (the live workers' ports)-- ProxyWorkers <--onRunning(true|false)-- each supervisor
 *   kernel: dnat to <node>:numgen inc mod <live> map { 0 : port0, 1 : port1 } (compile-nat.ts)
 *
 * Why processes on their own ports and not one shared listening socket:
 * Node 20 cannot set SO_REUSEPORT, and a socket shared between processes
 * lets the busiest one take most connections; the kernel's round robin
 * spreads them evenly and a dead worker's share can be moved off at once.
 *
 * Fail closed while a worker restarts: when one exits, its ports leave the
 * target and `onChange` asks the agent to apply the table again (the kernel
 * resets the few connections sent to the dead port meanwhile: no listener,
 * never a bypass); it comes back into the target only once its restarted
 * process holds the latest snapshot. With every worker down the target keeps
 * all ports (the kernel resets what is redirected, as with one process).
 */
import type { Logger } from "pino";
import { IpcDrops } from "../../abi/ipc-drops.js";
import { MembraneError } from "../../errors.js";
import type { DnsForgetPair, ProxyConfig, ProxyDrop } from "./protocol.js";
import {
  ProxySupervisor,
  type ProxyPush,
  type ProxyPushStats,
  type ProxySupervisorParams,
} from "./supervisor.js";

/** The redirect target of the live workers (datapath ProxyTarget's ports). */
export interface WorkerPorts {
  readonly l7Ports: readonly number[];
  readonly dnsPorts: readonly number[];
}

export interface ProxyWorkersParams extends Omit<
  ProxySupervisorParams,
  "onRunning" | "config" | "logger" | "drops"
> {
  readonly config: ProxyConfig;
  readonly logger: Logger;
  /** Processes; each gets the next ports after `config.l7Port` / `config.dnsPort`. */
  readonly workers: number;
  /** The live workers changed (after start): the redirect should follow `ports`. */
  readonly onChange?: () => void;
}

/** The ports of `workers` workers from the configured ones; throws naming what collides. */
export function workerPorts(config: Pick<ProxyConfig, "l7Port" | "dnsPort">, workers: number): WorkerPorts {
  if (!Number.isInteger(workers) || workers < 1 || workers > 256)
    throw workersError(`${workers} workers (1..256)`);
  const range = (from: number): number[] => Array.from({ length: workers }, (_, i) => from + i);
  const l7Ports = range(config.l7Port);
  const dnsPorts = range(config.dnsPort);
  const last = Math.max(config.l7Port, config.dnsPort) + workers - 1;
  if (last > 65535) throw workersError(`the ports of ${workers} workers would end at ${last}, past 65535`);
  if (l7Ports.some((p) => dnsPorts.includes(p)))
    throw workersError(
      `the L7 ports ${config.l7Port}..${config.l7Port + workers - 1} and the DNS ports ` +
        `${config.dnsPort}..${config.dnsPort + workers - 1} overlap`,
    );
  return { l7Ports, dnsPorts };
}

export class ProxyWorkers {
  private readonly sups: ProxySupervisor[] = [];
  private readonly live: boolean[];
  private readonly all: WorkerPorts;
  private started = false;
  /** What any worker sent malformed, by reason: one count for the node's proxy. */
  private readonly drops: IpcDrops<ProxyDrop>;

  constructor(private readonly p: ProxyWorkersParams) {
    this.drops = new IpcDrops("proxy", p.logger);
    this.all = workerPorts(p.config, p.workers);
    this.live = new Array<boolean>(p.workers).fill(false);
    for (let i = 0; i < p.workers; i++) {
      const config = {
        ...p.config,
        l7Port: this.all.l7Ports[i] as number,
        dnsPort: this.all.dnsPorts[i] as number,
      };
      this.sups.push(
        new ProxySupervisor({
          ...p,
          config,
          logger: p.workers > 1 ? p.logger.child({ proxyWorker: i }) : p.logger,
          onRunning: (running) => this.onRunning(i, running),
          drops: this.drops,
        }),
      );
    }
  }

  /** Worker processes configured. */
  get size(): number {
    return this.sups.length;
  }

  /** Every worker started (each has reported ready and holds the last snapshot pushed). */
  async start(): Promise<void> {
    await Promise.all(this.sups.map((s) => s.start()));
    this.started = true;
  }

  /** The ports the kernel should send new connections to: the live workers' (all of them when none is). */
  get ports(): WorkerPorts {
    const l7Ports = this.all.l7Ports.filter((_, i) => this.live[i]);
    const dnsPorts = this.all.dnsPorts.filter((_, i) => this.live[i]);
    return l7Ports.length > 0 ? { l7Ports, dnsPorts } : this.all;
  }

  get running(): boolean {
    return this.sups.some((s) => s.running);
  }

  /** The first worker's process id (the only one with one worker), while it runs. */
  get pid(): number | undefined {
    return this.sups[0]?.pid;
  }

  /** Every running worker's process id, by worker index (undefined: not running now). */
  get pids(): (number | undefined)[] {
    return this.sups.map((s) => s.pid);
  }

  /** What the workers sent that was dropped as malformed, by reason (protocol.ts fromProxy). */
  get dropped(): Readonly<Partial<Record<ProxyDrop, number>>> {
    return this.drops.view();
  }

  /** What pushes sent, summed over the workers. */
  get stats(): ProxyPushStats {
    const sum: ProxyPushStats = {
      snapshots: 0,
      hostsFull: 0,
      hostsDeltas: 0,
      hostsRefused: 0,
      hostEntries: 0,
      hostMessages: 0,
    };
    for (const s of this.sups) {
      const c = s.stats;
      for (const k of Object.keys(sum) as (keyof ProxyPushStats)[]) sum[k] += c[k];
    }
    return sum;
  }

  /** Every worker holds `snapshot` when this resolves (a stopped one gets it when it starts). */
  async push(snapshot: ProxyPush): Promise<void> {
    await Promise.all(this.sups.map((s) => s.push(snapshot)));
  }

  /** Every running worker has withdrawn these pairs from its held DNS answers (supervisor.ts forgetDns). */
  async forgetDns(pairs: readonly DnsForgetPair[]): Promise<void> {
    await Promise.all(this.sups.map((s) => s.forgetDns(pairs)));
  }

  /** The identity the first running worker gives an address (they all hold the same tables). */
  async identityOf(address: string): Promise<number | undefined> {
    const s = this.sups.find((x) => x.running);
    return s ? s.identityOf(address) : undefined;
  }

  async stop(): Promise<void> {
    this.started = false;
    await Promise.all(this.sups.map((s) => s.stop()));
  }

  private onRunning(i: number, running: boolean): void {
    if (this.live[i] === running) return;
    this.live[i] = running;
    if (this.started) this.p.onChange?.();
  }
}

function workersError(why: string): MembraneError {
  return new MembraneError("PROXY_FAILED", `Cannot run the L7 proxy workers: ${why}`, {
    hint: "Choose --proxy-workers, --proxy-port and --dns-proxy-port so that the port ranges fit and stay apart.",
  });
}
