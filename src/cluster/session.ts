/**
 * Cluster mode's connection to etcd (`membrane agent --cluster-store`): builds
 * the ClusterContext every cluster part uses and keeps the node's lease.
 *
 *   open() ──connect (CLUSTER_UNAVAILABLE + hint)──▶ grant lease ──▶ take over the previous run's keys
 *          ──▶ claim pod CIDRs ──▶ ClusterSession
 *   start(record) ──▶ node registry: publish own record, list + watch every node
 *   lease lost ──▶ grant a new one (backoff) ──▶ re-put the node record ──▶ onLeaseRenewed callbacks
 *
 * Stopping releases the lease without revoking it: the node's keys live until
 * the TTL runs out, so a restarted agent takes them over (re-put on its new
 * lease) and peers see no gap.
 */
import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import { EtcdStore, type StoreLease } from "../store/etcd.js";
import type { ClusterContext } from "./context.js";
import type { NodeAuthV1, NodeEncryptionV1, NodeRecordV1, PodCidrClaimV1 } from "./keys.js";
import { PodCidrAllocator, type PodCidrConfig } from "./podcidr.js";
import { NodeRegistry } from "./registry.js";
import { takeOverLeasedKeys } from "./takeover.js";
import type { LbConfig } from "../lb/types.js";

export interface ClusterOptions {
  /** Client URLs (http:// or https://), parsed from --cluster-store (options.ts). */
  readonly endpoints: readonly string[];
  readonly node: string;
  readonly nodeIp: { readonly ipv4?: string; readonly ipv6?: string };
  readonly labels: Readonly<Record<string, string>>;
  /** --etcd-ca / --etcd-cert / --etcd-key (PEM files). */
  readonly tls?: { readonly caFile: string; readonly certFile?: string; readonly keyFile?: string };
  /** etcd password authentication (--etcd-username, --etcd-password-file). */
  readonly auth?: { readonly username: string; readonly password: string };
  readonly podCidrs: PodCidrConfig;
  readonly leaseTtlSeconds: number;
  readonly tunnel: "native" | "vxlan";
  /** Store prefix (default "membrane/"; tests use their own). */
  readonly prefix?: string;
}

export interface ClusterStatus {
  readonly mode: "cluster";
  readonly node: string;
  readonly endpoints: readonly string[];
  readonly store: { readonly connected: boolean; readonly lastError?: string; readonly checkedAt?: string };
  readonly lease: {
    readonly state: "held" | "lost";
    readonly id: string;
    readonly ttlSeconds: number;
    readonly renewals: number;
    readonly lastLostAt?: string;
  };
  readonly podCidrs: PodCidrClaimV1;
  readonly tunnel: "native" | "vxlan";
  readonly nodesAlive: number;
}

function readPem(file: string, flag: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new MembraneError(
      "CLUSTER_INVALID",
      `Cannot read ${flag} ${JSON.stringify(file)}: ${(e as Error).message}`,
    );
  }
}

export class ClusterSession {
  private leaseNow: StoreLease;
  private leaseState: "held" | "lost" = "held";
  private renewals = 0;
  private lastLostAt: string | undefined;
  private readonly renewedCbs = new Set<(lease: StoreLease) => Promise<void> | void>();
  private storeOk: { connected: boolean; lastError?: string; checkedAt?: string } = { connected: true };
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  readonly ctx: ClusterContext;
  registry: NodeRegistry | undefined;

  private constructor(
    private readonly o: ClusterOptions,
    readonly kv: EtcdStore,
    lease: StoreLease,
    readonly podCidrs: PodCidrClaimV1,
    private readonly log: Logger,
  ) {
    this.leaseNow = lease;
    // `lease` is a getter: parts read ctx.lease.id when they put, so they always use the current lease.
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const self = this;
    this.ctx = {
      kv,
      get lease() {
        return self.leaseNow;
      },
      node: o.node,
      nodeIp: o.nodeIp,
      logger: log,
      onLeaseRenewed: (cb) => self.onLeaseRenewed(cb),
    };
  }

  /** Connects, grants the lease and claims the pod CIDRs; CLUSTER_UNAVAILABLE when etcd cannot be reached. */
  static async open(o: ClusterOptions, logger: Logger): Promise<ClusterSession> {
    const log = logger.child({ part: "cluster", node: o.node });
    const tls = o.tls
      ? {
          ca: readPem(o.tls.caFile, "--etcd-ca"),
          ...(o.tls.certFile ? { cert: readPem(o.tls.certFile, "--etcd-cert") } : {}),
          ...(o.tls.keyFile ? { key: readPem(o.tls.keyFile, "--etcd-key") } : {}),
        }
      : undefined;
    const kv = new EtcdStore({
      endpoints: o.endpoints,
      logger: log,
      dialTimeoutMs: 5000,
      ...(o.prefix !== undefined ? { prefix: o.prefix } : {}),
      ...(tls ? { tls } : {}),
      ...(o.auth ? { auth: o.auth } : {}),
    });
    try {
      try {
        await kv.revision();
      } catch (e) {
        throw new MembraneError(
          "CLUSTER_UNAVAILABLE",
          `Cannot reach the cluster store ${o.endpoints.join(",")}: ${(e as MembraneError).cause instanceof Error ? ((e as MembraneError).cause as Error).message : (e as Error).message}`,
          {
            cause: e,
            hint: "check that etcd runs and is reachable from this node, and the TLS files (--etcd-ca/--etcd-cert/--etcd-key) or credentials; the agent does not start without its cluster store",
          },
        );
      }
      const box: { s?: ClusterSession } = {};
      const lease = await kv.grantLease(o.leaseTtlSeconds, (err) => box.s?.leaseLost(err));
      try {
        // A restart: the previous run's keys move to this lease now, before they can expire (takeover.ts).
        await takeOverLeasedKeys(kv, o.node, lease, log);
        const podCidrs = await new PodCidrAllocator({ kv, node: o.node, logger: log }, o.podCidrs).claim();
        box.s = new ClusterSession(o, kv, lease, podCidrs, log);
        return box.s;
      } catch (e) {
        await lease.revoke().catch(() => undefined);
        throw e;
      }
    } catch (e) {
      await kv.close().catch(() => undefined);
      throw e;
    }
  }

  /** Publishes this node's record and starts watching every node. */
  async start(extra?: {
    bootId?: string;
    encryption?: NodeEncryptionV1;
    auth?: NodeAuthV1;
    lb?: LbConfig;
  }): Promise<NodeRegistry> {
    const record: NodeRecordV1 = {
      v: 1,
      name: this.o.node,
      addresses: this.o.nodeIp,
      podCidrs: [this.podCidrs.ipv4, this.podCidrs.ipv6].filter((c): c is string => c !== undefined),
      labels: this.o.labels,
      routing: this.o.tunnel,
      bootId: extra?.bootId ?? `${process.pid}-${Date.now().toString(36)}`,
      startedAt: new Date().toISOString(),
      ...(extra?.encryption ? { encryption: extra.encryption } : {}),
      // --spiffe: in the first record already, so peers never see this node's roots go (a restart
      // would otherwise drop them from every bundle for a moment and cut the pairs they signed).
      ...(extra?.auth ? { auth: extra.auth } : {}),
      ...(extra?.lb ? { lb: extra.lb } : {}),
    };
    const reg = new NodeRegistry(this.ctx, record);
    await reg.publish();
    await reg.start();
    this.registry = reg;
    const every = Math.max(1000, (this.o.leaseTtlSeconds * 1000) / 3);
    this.timer = setInterval(() => void this.check(), every);
    this.timer.unref();
    return reg;
  }

  /** Runs `cb` after every re-granted lease (re-put what the part owns on `lease`). */
  onLeaseRenewed(cb: (lease: StoreLease) => Promise<void> | void): () => void {
    this.renewedCbs.add(cb);
    return () => this.renewedCbs.delete(cb);
  }

  private async check(): Promise<void> {
    const at = new Date().toISOString();
    try {
      await this.kv.revision();
      this.storeOk = { connected: true, checkedAt: at };
    } catch (e) {
      if (this.storeOk.connected) this.log.warn({ err: (e as Error).message }, "cluster store unreachable");
      this.storeOk = { connected: false, lastError: (e as Error).message, checkedAt: at };
    }
  }

  private leaseLost(err: Error): void {
    if (this.closed || this.leaseState === "lost") return;
    this.leaseState = "lost";
    this.lastLostAt = new Date().toISOString();
    this.log.error(
      { err: err.message },
      "node lease lost: its keys are gone from etcd; granting a new lease",
    );
    void this.regrant();
  }

  private async regrant(): Promise<void> {
    for (let delay = 200; !this.closed; delay = Math.min(delay * 2, 5000)) {
      try {
        const lease = await this.kv.grantLease(this.o.leaseTtlSeconds, (err) => this.leaseLost(err));
        if (this.closed) {
          lease.release();
          return;
        }
        this.leaseNow = lease;
        await this.registry?.publish();
        for (const cb of this.renewedCbs) await cb(lease);
        this.renewals++;
        this.leaseState = "held";
        this.log.info(
          { lease: lease.id, renewals: this.renewals },
          "node lease re-granted; node keys put again",
        );
        return;
      } catch (e) {
        this.log.warn({ err: (e as Error).message }, "cannot re-grant the node lease yet; retrying");
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  }

  status(): ClusterStatus {
    return {
      mode: "cluster",
      node: this.o.node,
      endpoints: this.o.endpoints,
      store: this.storeOk,
      lease: {
        state: this.leaseState,
        id: this.leaseNow.id,
        ttlSeconds: this.leaseNow.ttlSeconds,
        renewals: this.renewals,
        ...(this.lastLostAt ? { lastLostAt: this.lastLostAt } : {}),
      },
      podCidrs: this.podCidrs,
      tunnel: this.o.tunnel,
      nodesAlive: this.registry?.nodes().size ?? 0,
    };
  }

  /** Stops watching and releases the lease (keys live until the TTL; see the header). */
  async close(opts?: { revoke?: boolean }): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.registry?.stop();
    if (opts?.revoke) await this.leaseNow.revoke().catch(() => undefined);
    else this.leaseNow.release();
    await this.kv.close();
  }
}
