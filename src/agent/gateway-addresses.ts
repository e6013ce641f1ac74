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
 *
 * The reservation's holder is `gateway <gateway netns> <namespace>/<name>`: Gateways are
 * per node, the gateway namespace's name is unique per node. Without a pool nothing is
 * held and every Gateway is served on the node's gateway address, shared (listeners.ts).
 * A pool with no free address: the Gateway gets none (Programmed False, AddressNotAssigned).
 */
import type { Logger } from "pino";
import { freeLoadBalancerIP, type LbPools } from "../lb/allocate.js";
import { inUseOf, IP_KEY } from "../lb/reservations.js";
import type { IpFamily } from "../lb/types.js";
import type { Store } from "../store/store.js";

/** Rounds of read-reserve before giving up (each lost only to another node's write). */
const ATTEMPTS = 10;

export interface GatewayAddressesParams {
  /** The store the Services' reservations live in (the cluster's in cluster mode). */
  readonly store: Store;
  readonly logger: Logger;
  /** The gateway namespace's name (unique per node): part of the holder. */
  readonly netns: string;
  readonly pool: LbPools;
}

export class GatewayAddresses {
  /** Gateway `namespace/name` -> the addresses reserved for it, pool order. */
  private readonly held = new Map<string, string[]>();
  private readonly families: IpFamily[];

  constructor(private readonly d: GatewayAddressesParams) {
    const pools = [d.pool.loadBalancerPool, d.pool.loadBalancerPoolSecondary];
    this.families = pools.flatMap((p) => (p === undefined ? [] : [p.includes(":") ? "IPv6" : "IPv4"]));
  }

  /** A pool is configured: Gateways get addresses of their own. */
  get enabled(): boolean {
    return this.families.length > 0;
  }

  private get holderPrefix(): string {
    return `gateway ${this.d.netns} `;
  }

  /** Reads what this node's Gateways hold (at start: they keep their addresses across restarts). */
  async load(): Promise<void> {
    if (!this.enabled) return;
    this.held.clear();
    for (const kv of (await this.d.store.list(IP_KEY)).kvs) {
      if (!kv.value.startsWith(this.holderPrefix)) continue;
      const gw = kv.value.slice(this.holderPrefix.length);
      this.held.set(gw, [...(this.held.get(gw) ?? []), kv.key.slice(IP_KEY.length)]);
    }
  }

  /** Each wanted Gateway's addresses as held now ([] when none could be given); undefined without a pool. */
  assigned(want: readonly string[]): Record<string, string[]> | undefined {
    if (!this.enabled) return undefined;
    return Object.fromEntries(want.map((k) => [k, [...(this.held.get(k) ?? [])]]));
  }

  /** Reserves an address of each pool family a wanted Gateway lacks; returns the addresses newly held. */
  async reserve(want: readonly string[]): Promise<string[]> {
    if (!this.enabled) return [];
    const lacking = want.filter((k) => (this.held.get(k)?.length ?? 0) < this.families.length);
    if (lacking.length === 0) return [];
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const kvs = (await this.d.store.list(IP_KEY)).kvs;
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
      if (puts.length === 0) return [];
      const r = await this.d.store.txn({
        compare: puts.map((p) => ({ key: p.key, modRevision: 0 })),
        ops: puts.map((p) => ({ type: "put" as const, key: p.key, value: this.holderPrefix + p.gw })),
      });
      if (!r.succeeded) continue; // another node (or a Service) took one first: read again
      for (const p of puts) this.held.set(p.gw, [...(this.held.get(p.gw) ?? []), p.ip]);
      return puts.map((p) => p.ip);
    }
    this.d.logger.error({ gateways: lacking }, "cannot reserve gateway addresses: the store kept changing");
    return [];
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
}
