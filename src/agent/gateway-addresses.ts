/**
 * Each Gateway's own address, as Cilium gives it one: there each Gateway gets
 * a LoadBalancer Service whose address LB-IPAM assigns; here a Gateway of ours
 * that names no address in spec.addresses gets one address of each family of
 * the agent's LoadBalancer pool (--lb-pool), the same pool as the Services'
 * LoadBalancer addresses, reserved so that a Service never gets a Gateway's
 * address nor a Gateway a Service's (lb/reservations.ts): on one host under the
 * Services' own key `lb/alloc/ip/<address>`; in cluster mode under the node's
 * own key `lb/gateways/<node>/<address>` (its etcd role writes only there), in a
 * transaction that compares `lb/alloc/ip/<address>` absent and nothing under
 * `lb/gateways/` written since the read, so two nodes never hold one address.
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
 * Least privilege (`membrane cluster etcd-setup`): a node's role writes `lb/gateways/<node>/` and
 * nothing else of lb/, so it can neither take nor delete a Service's or another node's reservation.
 * A role made before it had that grant is refused: said in the error, the agent's log and each
 * Gateway's status (`refused`, AddressNotAssigned), with the grant that fixes it.
 *
 * Upgrade: agents before this one reserved in cluster mode under `lb/alloc/ip/` (holder
 * `gateway <node> ...`). load() moves this node's to its own keys in one transaction (the Gateway
 * keeps its address). A role that may not delete them (auth turned on since) leaves them: the
 * Gateway gets a new address and the log line gives the one command that frees the old one.
 * While older agents may still run (no etcd auth), each reservation is also written where they look
 * (the mirror, gateway-legacy.ts), so they see the address taken; a moved one stays there as its mirror.
 */
import type { Logger } from "pino";
import { ADMIN_USER, deniedByRole, nodeUser } from "../cluster/etcd-setup.js";
import { MembraneError } from "../errors.js";
import { freeLoadBalancerIP, type LbPools } from "../lb/allocate.js";
import { LegacyMirror } from "./gateway-legacy.js";
import { GATEWAY_KEY, gatewayHolds, gatewayNodePrefix, inUseOf, IP_KEY } from "../lb/reservations.js";
import type { IpFamily } from "../lb/types.js";
import type { StoreLease } from "../store/etcd-lease.js";
import type { Store, TxnCompare, TxnOp, TxnRequest, Unsubscribe } from "../store/store.js";

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
  /** Cluster mode: each reservation mirrored where agents before session 18 look (gateway-legacy.ts). */
  private readonly legacy: LegacyMirror | undefined;

  constructor(private readonly d: GatewayAddressesParams) {
    this.legacy = d.cluster ? new LegacyMirror(d.store, d.logger) : undefined;
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

  /** Where this node's reservations live: its own prefix in cluster mode, the Services' keys on one host. */
  private get ownPrefix(): string {
    const c = this.d.cluster;
    return c ? gatewayNodePrefix(c.node) : IP_KEY;
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
    for (const kv of (await this.d.store.list(this.ownPrefix)).kvs) {
      if (!kv.value.startsWith(this.holderPrefix)) continue;
      if (lease) {
        const r = await this.d.store.txn({
          compare: [{ key: kv.key, modRevision: kv.modRevision }],
          ops: [{ type: "put", key: kv.key, value: kv.value, lease: lease.id }],
        });
        if (!r.succeeded) continue;
        if (
          this.legacy &&
          !(await this.legacy.keep(kv.key.slice(this.ownPrefix.length), kv.value, lease.id))
        ) {
          // Held by an older agent too: one holder per address, and that one cannot see ours.
          await this.d.store.txn({ compare: [{ key: kv.key, modRevision: r.revision }], ops: [{ type: "delete", key: kv.key }] }); // prettier-ignore
          continue;
        }
      }
      this.hold(kv.value.slice(this.holderPrefix.length), kv.key.slice(this.ownPrefix.length));
    }
    if (lease && c) await this.moveOld(lease.id, c.node);
    this.loaded = true;
  }

  private hold(gw: string, ip: string): void {
    this.held.set(gw, [...(this.held.get(gw) ?? []), ip]);
  }

  /**
   * The upgrade (header): this node's reservations under `lb/alloc/ip/` by an older agent, each
   * moved to `lb/gateways/<node>/` on the lease (or only deleted when the Gateway holds that family
   * already), as read: one changed meanwhile is not ours. Refused (the role may not delete them):
   * left, and said with the command that frees them.
   */
  private async moveOld(lease: string, node: string): Promise<void> {
    for (const kv of (await this.d.store.list(IP_KEY)).kvs) {
      if (!kv.value.startsWith(this.holderPrefix)) continue;
      const gw = kv.value.slice(this.holderPrefix.length);
      const ip = kv.key.slice(IP_KEY.length);
      const to = this.ownPrefix + ip;
      if (this.held.get(gw)?.includes(ip)) continue; // the mirror of a reservation of ours (load kept it)
      const has = (this.held.get(gw) ?? []).some((a) => a.includes(":") === ip.includes(":"));
      // Moved: kept where it is as the mirror, on the lease, while older agents may read it (header).
      const old: TxnOp = has || this.legacy?.off !== false ? { type: "delete", key: kv.key } : { type: "put", key: kv.key, value: kv.value, lease }; // prettier-ignore
      const r = await this.d.store
        .txn({
          compare: [
            { key: kv.key, modRevision: kv.modRevision },
            ...(has ? [] : [{ key: to, modRevision: 0 }]),
          ],
          ops: [old, ...(has ? [] : [{ type: "put" as const, key: to, value: kv.value, lease }])],
        })
        .catch((e: unknown) => {
          if (!deniedByRole(e)) throw e;
          const key = `${this.d.cluster?.storePrefix ?? "membrane/"}cluster/${kv.key}`;
          this.d.logger.error(
            { gateway: gw, address: ip },
            `cannot move gateway address ${ip}, reserved by an older agent under ${key}, to this node's keys: etcd role ${nodeUser(node)} may not delete it; the Gateway gets another address; free this one with: etcdctl --user ${ADMIN_USER} del ${key}`,
          );
          return undefined;
        });
      if (r?.succeeded && !has) this.hold(gw, ip);
    }
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
      // Cluster mode: every node's Gateways too, and a compare that fails if one reserved since.
      const gws = this.d.cluster ? await this.d.store.list(GATEWAY_KEY) : undefined;
      const used = inUseOf([], [...kvs.map((kv): [string, string] => [kv.key, kv.value]), ...gatewayHolds(gws?.kvs ?? [])]); // prettier-ignore
      const unchanged: TxnCompare[] = gws ? [{ prefix: GATEWAY_KEY, unchangedSince: gws.revision }] : [];
      const puts: { key: string; gw: string; ip: string }[] = [];
      for (const gw of lacking) {
        const has = this.held.get(gw) ?? [];
        for (const f of this.families) {
          if (has.some((a) => a.includes(":") === (f === "IPv6"))) continue;
          const ip = freeLoadBalancerIP(this.d.pool, f, used);
          if (ip === undefined) continue; // that family's pool is full: the Gateway goes without it
          (used.ips as Map<string, string>).set(ip, gw);
          puts.push({ key: this.ownPrefix + ip, gw, ip });
        }
      }
      if (puts.length === 0) {
        await this.wait(needs, revision);
        return [];
      }
      const lease = this.lease?.id;
      const put = (key: string, gw: string): TxnOp => ({ type: "put", key, value: this.holderPrefix + gw, ...(lease !== undefined ? { lease } : {}) }); // prettier-ignore
      // No Service holds it (on one host that key is the reservation itself), no Gateway since the read.
      const compare = [...puts.map((p) => ({ key: IP_KEY + p.ip, modRevision: 0 })), ...unchanged];
      const ops = puts.map((p) => put(p.key, p.gw));
      const r = await (
        this.legacy
          ? this.legacy.txn({ compare, ops }, { compare: [], ops: puts.map((p) => put(IP_KEY + p.ip, p.gw)) })
          : this.d.store.txn({ compare, ops })
      ).catch((e: unknown) => {
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
    if (!deniedByRole(e)) return e;
    const role = this.d.cluster ? nodeUser(this.d.cluster.node) : "this node's";
    // The reservations' keys in etcd (cluster mode: resource-store.ts puts lb/ under cluster/).
    const keys = `${this.d.cluster?.storePrefix ?? "membrane/"}cluster/${this.ownPrefix}`;
    this.refusedBy =
      `the cluster store refused this node a LoadBalancer pool address: etcd role ${role} may not write ` +
      `${keys} (roles made by \`membrane cluster etcd-setup\` before it granted this node's gateway keys lack it); ` +
      `grant it (the hint says how), name the node's gateway address in spec.addresses, or run the agent without --lb-pool`;
    return new MembraneError(
      "CLUSTER_UNAVAILABLE",
      `Cannot reserve an address of the LoadBalancer pool for Gateway(s) ${gateways.join(", ")}: ${this.refusedBy}`,
      {
        cause: e,
        hint: `with etcd's root credentials (the node's own keys only): etcdctl role grant-permission --prefix ${role} readwrite ${keys}`,
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
      "lb/", // the Services' reservations and (cluster mode) the Gateways'
      revision + 1,
      (ev) => {
        if (!ev.key.startsWith(IP_KEY) && !ev.key.startsWith(GATEWAY_KEY)) return;
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
        const ours = async (key: string): Promise<TxnRequest> => {
          const kv = await this.d.store.get(key);
          return kv?.value === this.holderPrefix + gw
            ? { compare: [{ key, modRevision: kv.modRevision }], ops: [{ type: "delete", key }] }
            : { compare: [], ops: [] };
        };
        const own = await ours(this.ownPrefix + ip);
        if (this.legacy && !this.legacy.off) await this.legacy.txn(own, await ours(IP_KEY + ip));
        else if (own.ops.length > 0) await this.d.store.txn(own);
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
