/**
 * Each Gateway's own address, as Cilium gives it one: there each Gateway gets
 * a LoadBalancer Service whose address LB-IPAM assigns; here a Gateway of ours
 * that names no address in spec.addresses gets one address of each family of
 * the agent's LoadBalancer pool (--lb-pool), the same pool and the same
 * reservations as the Services' LoadBalancer addresses (lb/reservations.ts:
 * `lb/alloc/ip/<address>`, cluster-wide in cluster mode), so a Service never
 * gets a Gateway's address nor a Gateway a Service's.
 *
 *   Gateways without an address --reserve (txn: key absent; lost: read again)--> held
 *     --> the gateway namespace holds them (ingress-netns.ts) --> pushed to the process
 *   Gateways gone --> released after the push that stops serving them (make before break)
 *   pool full --> wait: no reading until the watch on the reservations sees a change (onChange)
 *
 * The reservation's holder is `gateway <gateway netns> <namespace>/<name>` on one host, and
 * `gateway <node> <gateway netns> <namespace>/<name>` in cluster mode (every node may name its
 * gateway namespace alike). Without a pool nothing is held and every Gateway is served on the
 * node's gateway address, shared (listeners.ts). A pool with no free address: the Gateway gets
 * none (Programmed False, AddressNotAssigned).
 *
 * A node removed for good (cluster mode). Gateways are the node's own resources (its state
 * directory), so their reservations must not outlive the node, yet a node restarted under its name
 * keeps them. They are put on a lease of their own (LEASE_TTL_S, longer than the node's): when the
 * node is gone for that long, etcd deletes them and the pool is whole again; a restarted agent puts
 * them on its new lease at start (load). Why a lease and not a collection by the other nodes: the
 * deletion is etcd's, atomic with the lease's end, and needs no other node alive nor allowed to
 * delete another node's keys. Why not the node's own lease (15 s): a node cut off from etcd must
 * stop serving the addresses before etcd may give them away (below), and a longer lease lets it
 * ride out short etcd troubles instead (as Kubernetes waits 300 s before evicting from an
 * unreachable node).
 *
 * Two live Gateways never share an address, also across a network partition: etcd gives an
 * address again only once its reservation is gone, and a holder that could not renew its lease
 * stops serving (assigned() gives [], `fenced`) a keep-alive period before etcd can end the lease
 * (StoreLease.confirmedUntil), so the address leaves its gateway namespace before another node
 * can hold it. When etcd answers again, a lease still alive means the reservations are intact
 * (served again); a lease etcd ended means they are gone: a new lease, and the Gateways reserve
 * anew like new ones.
 *
 * Least privilege (`membrane cluster etcd-setup`): a node's etcd role may not write the Services'
 * reservations (cluster/lb/), and granting it would let the node take or delete Services'
 * addresses. Such a node gets no address for its Gateways: the refusal is said in the error, the
 * agent's log and each Gateway's status (`refused`, AddressNotAssigned), naming what to do.
 */
import type { Logger } from "pino";
import { nodeUser } from "../cluster/etcd-setup.js";
import { MembraneError } from "../errors.js";
import { freeLoadBalancerIP, type LbPools } from "../lb/allocate.js";
import { inUseOf, IP_KEY } from "../lb/reservations.js";
import type { IpFamily } from "../lb/types.js";
import type { StoreLease } from "../store/etcd-lease.js";
import type { Store, Unsubscribe } from "../store/store.js";

/** Rounds of read-reserve before giving up (each lost only to another node's write). */
const ATTEMPTS = 10;
/** The reservations' lease in cluster mode: how long a node may be gone before its Gateways' addresses go back to the pool. */
export const LEASE_TTL_S = 300;

export interface GatewayAddressesCluster {
  /** This node's name: part of the holder. */
  readonly node: string;
  /** Grants a lease kept alive in the background (EtcdStore.grantLease). */
  readonly grantLease: (ttlSeconds: number, onLost: (err: Error) => void) => Promise<StoreLease>;
  /** The etcd store's key prefix (default "membrane/"): to name the reservations' keys in a refusal. */
  readonly storePrefix?: string;
  /** Default LEASE_TTL_S (tests use a few seconds). */
  readonly leaseTtlSeconds?: number;
}

export interface GatewayAddressesParams {
  /** The store the Services' reservations live in (the cluster's in cluster mode). */
  readonly store: Store;
  readonly logger: Logger;
  /** The gateway namespace's name (unique per node): part of the holder. */
  readonly netns: string;
  readonly pool: LbPools;
  /** Cluster mode: reservations are the node's, on a lease (see the header). */
  readonly cluster?: GatewayAddressesCluster;
}

export class GatewayAddresses {
  /** Gateway `namespace/name` -> the addresses reserved for it, pool order. */
  private readonly held = new Map<string, string[]>();
  private readonly families: IpFamily[];
  private lease: StoreLease | undefined;
  /** load() read what is held on the current lease (cluster mode: reserve() reads again until it has). */
  private loaded = false;
  /** The needs a full pool could not meet, and the revision it was read at: not read again until a change after it. */
  private waiting: { readonly needs: string; readonly revision: number } | undefined;
  private unwatch: Unsubscribe | undefined;
  private changed: (() => void) | undefined;
  /** The store refused this node the reservations (permission denied): why, for the Gateways' status. */
  private refusedBy: string | undefined;

  constructor(private readonly d: GatewayAddressesParams) {
    const pools = [d.pool.loadBalancerPool, d.pool.loadBalancerPoolSecondary];
    this.families = pools.flatMap((p) => (p === undefined ? [] : [p.includes(":") ? "IPv6" : "IPv4"]));
  }

  /** A pool is configured: Gateways get addresses of their own. */
  get enabled(): boolean {
    return this.families.length > 0;
  }

  private get holderPrefix(): string {
    const c = this.d.cluster;
    return c ? `gateway ${c.node} ${this.d.netns} ` : `gateway ${this.d.netns} `;
  }

  /**
   * Cluster mode: the lease may have ended at etcd, or will within a keep-alive period (cut off
   * from etcd, or lost): nothing held may be served. Never on one host.
   */
  get fenced(): boolean {
    if (!this.enabled || !this.d.cluster) return false;
    const l = this.lease;
    if (l === undefined) return true;
    // Written so that a time that is not a number fences (NaN compares false).
    return !(performance.now() < l.confirmedUntil() - (l.ttlSeconds * 1000) / 3);
  }

  /** Why no address can be reserved when the store refuses it (least privilege); undefined otherwise. */
  get refused(): string | undefined {
    return this.refusedBy;
  }

  /** Calls `f` when the reservations change while a Gateway waits for a full pool (then reserve() reads again). */
  onChange(f: () => void): void {
    this.changed = f;
  }

  /**
   * Reads what this node's Gateways hold (at start: they keep their addresses across restarts).
   * Cluster mode: first a lease of their own, and each reservation still as the last run left it
   * is put on it (the last run's lease ends unrenewed); one changed meanwhile is not ours to keep.
   */
  async load(): Promise<void> {
    if (!this.enabled) return;
    this.held.clear();
    this.waiting = undefined;
    const c = this.d.cluster;
    if (c && this.lease === undefined) {
      const lease: StoreLease = await c.grantLease(c.leaseTtlSeconds ?? LEASE_TTL_S, (err) =>
        this.lost(lease, err),
      );
      this.lease = lease;
    }
    const lease = this.lease;
    for (const kv of (await this.d.store.list(IP_KEY)).kvs) {
      if (!kv.value.startsWith(this.holderPrefix)) continue;
      if (lease) {
        const r = await this.d.store.txn({
          compare: [{ key: kv.key, modRevision: kv.modRevision }],
          ops: [{ type: "put", key: kv.key, value: kv.value, lease: lease.id }],
        });
        if (!r.succeeded) continue;
      }
      const gw = kv.value.slice(this.holderPrefix.length);
      this.held.set(gw, [...(this.held.get(gw) ?? []), kv.key.slice(IP_KEY.length)]);
    }
    this.loaded = true;
  }

  /** etcd ended the lease: its reservations are gone, nothing held is ours any more (reserve() starts over). */
  private lost(lease: StoreLease, err: Error): void {
    if (this.lease !== lease) return;
    this.lease = undefined;
    this.loaded = false;
    this.held.clear();
    this.d.logger.warn({ err: err.message }, "the gateway addresses' lease ended: reserving them anew");
  }

  /** Each wanted Gateway's addresses as held now ([] when none could be given, or fenced); undefined without a pool. */
  assigned(want: readonly string[]): Record<string, string[]> | undefined {
    if (!this.enabled) return undefined;
    const fenced = this.fenced;
    return Object.fromEntries(want.map((k) => [k, fenced ? [] : [...(this.held.get(k) ?? [])]]));
  }

  /** Reserves an address of each pool family a wanted Gateway lacks; returns the addresses newly held. */
  async reserve(want: readonly string[]): Promise<string[]> {
    if (!this.enabled) return [];
    if (this.d.cluster && !this.loaded) await this.load(); // the lease ended (a new one), or a read failed
    if (this.fenced) return []; // cut off from etcd: nothing new either, until it answers
    const lacking = want.filter((k) => (this.held.get(k)?.length ?? 0) < this.families.length);
    if (lacking.length === 0) return [];
    const needs = JSON.stringify(lacking.map((k) => [k, this.held.get(k) ?? []]));
    if (this.waiting?.needs === needs && this.unwatch) return []; // the pool is as full as last read
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const { kvs, revision } = await this.d.store.list(IP_KEY);
      const used = inUseOf(
        [],
        kvs.map((kv) => [kv.key, kv.value]),
      );
      const puts: { key: string; gw: string; ip: string }[] = [];
      for (const gw of lacking) {
        const has = this.held.get(gw) ?? [];
        for (const f of this.families) {
          if (has.some((a) => a.includes(":") === (f === "IPv6"))) continue;
          const ip = freeLoadBalancerIP(this.d.pool, f, used);
          if (ip === undefined) continue; // that family's pool is full: the Gateway goes without it
          (used.ips as Map<string, string>).set(ip, gw);
          puts.push({ key: IP_KEY + ip, gw, ip });
        }
      }
      if (puts.length === 0) {
        await this.wait(needs, revision);
        return [];
      }
      const lease = this.lease?.id;
      const r = await this.d.store
        .txn({
          compare: puts.map((p) => ({ key: p.key, modRevision: 0 })),
          ops: puts.map((p) => ({
            type: "put" as const,
            key: p.key,
            value: this.holderPrefix + p.gw,
            ...(lease !== undefined ? { lease } : {}),
          })),
        })
        .catch((e: unknown) => {
          throw this.refusal(e, lacking);
        });
      this.refusedBy = undefined; // granted since (reserve() tries at each sync)
      if (!r.succeeded) continue; // another node (or a Service) took one first: read again
      for (const p of puts) this.held.set(p.gw, [...(this.held.get(p.gw) ?? []), p.ip]);
      return puts.map((p) => p.ip);
    }
    this.d.logger.error({ gateways: lacking }, "cannot reserve gateway addresses: the store kept changing");
    return [];
  }

  /**
   * A store error as thrown; a permission denied (the node's etcd role lacks the reservations'
   * prefix) becomes an error that names the prefix and what to do, kept for the status (`refused`).
   */
  private refusal(e: unknown, gateways: readonly string[]): unknown {
    let denied = false;
    for (let c: unknown = e; c instanceof Error && !denied; c = c.cause)
      denied = /permission denied/i.test(c.message);
    if (!denied) return e;
    const role = this.d.cluster ? nodeUser(this.d.cluster.node) : "this node's";
    // The reservations' keys in etcd (cluster mode: resource-store.ts puts lb/ under cluster/).
    const keys = `${this.d.cluster?.storePrefix ?? "membrane/"}cluster/${IP_KEY}`;
    this.refusedBy =
      `the cluster store refused this node a LoadBalancer pool address: etcd role ${role} may not write ` +
      `${keys} (the least-privilege roles of \`membrane cluster etcd-setup\` do not grant it); ` +
      `name the node's gateway address in spec.addresses, or run the agent without --lb-pool`;
    return new MembraneError(
      "CLUSTER_UNAVAILABLE",
      `Cannot reserve an address of the LoadBalancer pool for Gateway(s) ${gateways.join(", ")}: ${this.refusedBy}`,
      {
        cause: e,
        hint:
          `or grant it (this also lets the node take and delete Services' addresses): etcdctl role ` +
          `grant-permission --prefix ${role} readwrite ${keys}`,
      },
    );
  }

  /**
   * The pool cannot meet `needs` as read at `revision`: reserve() skips reading until a change
   * after that revision (a watch from revision + 1 misses none), which also calls onChange.
   */
  private async wait(needs: string, revision: number): Promise<void> {
    this.waiting = { needs, revision };
    if (this.unwatch) return; // watching since an earlier revision: every later change comes too
    this.unwatch = await this.d.store.watch(
      IP_KEY,
      revision + 1,
      (ev) => {
        if (this.waiting === undefined || ev.revision <= this.waiting.revision) return;
        this.waiting = undefined;
        this.changed?.();
      },
      {
        // The watch is over: read on each reserve() again, and watch anew at the next full pool.
        onError: () => {
          this.unwatch = undefined;
          this.waiting = undefined;
        },
      },
    );
  }

  /** Releases what Gateways no longer wanted hold (after the push that stopped serving them); returns those addresses. */
  async release(want: readonly string[]): Promise<string[]> {
    const keep = new Set(want);
    const gone = [...this.held].filter(([k]) => !keep.has(k));
    const out: string[] = [];
    for (const [gw, ips] of gone) {
      for (const ip of ips) {
        // Only a reservation still ours: never delete what another holder has taken since.
        const kv = await this.d.store.get(IP_KEY + ip);
        if (kv?.value === this.holderPrefix + gw)
          await this.d.store.txn({
            compare: [{ key: kv.key, modRevision: kv.modRevision }],
            ops: [{ type: "delete", key: kv.key }],
          });
        out.push(ip);
      }
      this.held.delete(gw);
    }
    return out;
  }

  /** Stops watching and keeping the lease alive, without ending it: a restart within its TTL keeps every address. */
  async stop(): Promise<void> {
    const u = this.unwatch;
    this.unwatch = undefined;
    await u?.().catch(() => undefined);
    this.lease?.release();
  }
}
