/**
 * Endpoint address allocation from the node's pod CIDRs (IPv4, optional IPv6).
 *
 *   allocate(owner) ──list ipam/<cidr>/──▶ first free address after the last one handed out
 *                   ──txn(key absent ⇒ put owner)──▶ store   (lost the race? try the next)
 *
 * Every allocation is a key `ipam/<cidr>/<ip>` whose value is `{"owner": ...}`,
 * created with a compare-and-put on "the key does not exist", so two agents
 * (or two requests) can never hand out one address twice. The network
 * address, the gateway (first host, the node's side of the pod routes) and the
 * last address (IPv4 broadcast; kept free in IPv6 too for symmetry) are never
 * allocated. Allocation is idempotent per owner: asking again returns the
 * address the owner already holds, so a restarted agent can retry safely.
 * A caller may ask for one exact address (`allocate(owner, {ipv4})`, e.g. to
 * rebuild a scenario's addresses); it is reserved with the same compare-and-put.
 */
import { MembraneError } from "../errors.js";
import {
  addrString,
  familyWidth,
  mask,
  parseAddr,
  parsePrefix,
  prefixString,
  type Prefix,
} from "../labels/cidr.js";
import type { Store, TxnRequest } from "../store/store.js";

export const IPAM_PREFIX = "ipam/";

export interface IpamParams {
  store: Store;
  /** IPv4 pod CIDR, e.g. "10.200.0.0/24". */
  ipv4: string;
  /** Optional IPv6 pod CIDR, e.g. "fd00:200::/64". */
  ipv6?: string;
}

/** Exact addresses an owner asks for; absent families are allocated as usual. */
export interface AddressRequest {
  readonly ipv4?: string;
  readonly ipv6?: string;
}

export interface Allocation {
  readonly ipv4: string;
  readonly ipv6?: string;
}

/** An address a pool would give, and the store transaction that takes it (absent: already held). */
interface Taking {
  readonly ip: string;
  readonly txn?: TxnRequest;
}

/** How often a pool retries after losing a race for an address to another allocator. */
const MAX_RACES = 64;

class Pool {
  readonly cidr: string;
  readonly keyPrefix: string;
  /** First and count of allocatable addresses. */
  private readonly first: bigint;
  readonly size: bigint;
  private next = 0n;
  private view: Map<string, string> | undefined;
  private watching = false;

  constructor(
    private readonly store: Store,
    readonly prefix: Prefix,
  ) {
    this.cidr = prefixString(prefix);
    this.keyPrefix = `${IPAM_PREFIX}${this.cidr}/`;
    const total = 1n << BigInt(familyWidth(prefix.family) - prefix.bits);
    this.first = prefix.addr + 2n;
    this.size = total - 3n;
  }

  get gateway(): string {
    return addrString(this.prefix.family, this.prefix.addr + 1n);
  }

  /**
   * Address -> owner: listed once, then kept current by a watch of the prefix (a list scans the
   * whole store: tens of ms with 50,000 remote endpoints in it). A stale view is safe: the
   * compare-and-put refuses an address taken meanwhile, and a lost race lists again (forget()).
   */
  private async used(): Promise<ReadonlyMap<string, string>> {
    if (this.view !== undefined) return this.view;
    const { kvs, revision } = await this.store.list(this.keyPrefix);
    const m = new Map(kvs.map((kv) => [kv.key.slice(this.keyPrefix.length), ownerOf(kv.value)]));
    if (this.watching) return m; // a view is being set up by another call
    this.watching = true;
    try {
      const unwatch = await this.store.watch(this.keyPrefix, revision + 1, (ev) => {
        const ip = ev.key.slice(this.keyPrefix.length);
        if (ev.type === "put") m.set(ip, ownerOf(ev.value));
        else m.delete(ip);
      });
      this.forget = () => {
        this.view = undefined;
        this.watching = false;
        void unwatch().catch(() => undefined);
      };
      this.view = m;
    } catch {
      this.watching = false; // no watch: list every time
    }
    return m;
  }

  /** Lists the prefix and starts its watch now (the agent's start), so the first create does not. */
  async warm(): Promise<void> {
    await this.used();
  }

  /** Drops the watched view (a lost race: another allocator's change may not have reached it yet). */
  private forget: () => void = () => undefined;

  async allocate(owner: string): Promise<{ ip: string; fresh: boolean }> {
    for (let race = 0; race < MAX_RACES; race++) {
      const t = await this.pick(owner);
      if (t.txn === undefined) return { ip: t.ip, fresh: false };
      if ((await this.store.txn(t.txn)).succeeded) return { ip: t.ip, fresh: true };
      // Another allocator took it between our list and our txn: list again and move on.
      this.forget();
    }
    throw new MembraneError(
      "STORE_FAILED",
      `Cannot allocate an address in ${this.cidr} for ${owner}: lost ${MAX_RACES} races in a row`,
      {
        hint: "many allocators are contending for few free addresses; retry",
      },
    );
  }

  /** The address allocate() would take and the transaction that takes it (none: `owner` holds it already). */
  async pick(owner: string): Promise<Taking> {
    const used = await this.used();
    for (const [ip, o] of used) if (o === owner) return { ip };
    const ip = this.firstFree(used);
    if (ip === undefined) {
      throw new MembraneError(
        "IPAM_EXHAUSTED",
        `Cannot allocate an IPv${this.prefix.family} address for ${owner}: all ${this.size} addresses of ${this.cidr} are in use`,
        {
          hint: "remove endpoints that are gone (`membrane endpoint list`), or give the node a larger pod CIDR",
        },
      );
    }
    return { ip, txn: this.taking(owner, ip) };
  }

  private taking(owner: string, ip: string): TxnRequest {
    return {
      compare: [{ key: this.keyPrefix + ip, modRevision: 0 }],
      ops: [{ type: "put", key: this.keyPrefix + ip, value: JSON.stringify({ owner }) }],
    };
  }

  /** Reserves exactly `ip` for `owner` (idempotent); refuses addresses outside the pool or held by another. */
  async reserve(owner: string, ip: string): Promise<{ ip: string; fresh: boolean }> {
    const t = await this.pickExact(owner, ip);
    if (t.txn === undefined) return { ip: t.ip, fresh: false };
    if (!(await this.store.txn(t.txn)).succeeded) throw this.inUse(owner, ip, undefined);
    return { ip: t.ip, fresh: true };
  }

  /** reserve()'s checks, and the transaction that takes `ip` (none: `owner` holds it already). */
  async pickExact(owner: string, ip: string): Promise<Taking> {
    const a = parseAddr(ip);
    const why =
      a === undefined || a.family !== this.prefix.family
        ? `it is not an IPv${this.prefix.family} address`
        : (a.value & mask(this.prefix.family, this.prefix.bits)) !== this.prefix.addr
          ? `it is outside ${this.cidr}`
          : a.value === this.prefix.addr + 1n
            ? `it is the node's gateway address of ${this.cidr}`
            : a.value < this.first || a.value >= this.first + this.size
              ? `it is the network or last address of ${this.cidr}`
              : undefined;
    if (why !== undefined || a === undefined) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot give ${owner} the address ${ip}: ${why ?? "invalid"}`,
        {
          hint: `ask for an address between ${addrString(this.prefix.family, this.first)} and ${addrString(this.prefix.family, this.first + this.size - 1n)}, or none to get one allocated`,
        },
      );
    }
    const canonical = addrString(this.prefix.family, a.value);
    const used = await this.used();
    for (const [held, o] of used) {
      if (o === owner && held === canonical) return { ip: canonical };
      if (o === owner) {
        throw new MembraneError(
          "ENDPOINT_INVALID",
          `Cannot give ${owner} the address ${ip}: it already holds ${held}`,
        );
      }
    }
    const other = used.get(canonical);
    if (other !== undefined) throw this.inUse(owner, ip, other);
    return { ip: canonical, txn: this.taking(owner, canonical) };
  }

  private inUse(owner: string, ip: string, other: string | undefined): MembraneError {
    return new MembraneError(
      "ENDPOINT_INVALID",
      `Cannot give ${owner} the address ${ip}: it is in use by ${other ?? "another endpoint"}`,
      {
        hint: "`membrane get endpoints` shows who holds which address",
      },
    );
  }

  /** The first free address at or after the last one handed out, wrapping (so freed addresses rest a while). */
  private firstFree(used: ReadonlyMap<string, string>): string | undefined {
    if (BigInt(used.size) >= this.size) return undefined;
    for (let i = 0n; i < this.size; i++) {
      const off = (this.next + i) % this.size;
      const ip = addrString(this.prefix.family, this.first + off);
      if (!used.has(ip)) {
        this.next = (off + 1n) % this.size;
        return ip;
      }
    }
    return undefined;
  }

  async release(owner: string): Promise<string[]> {
    const { kvs } = await this.store.list(this.keyPrefix);
    const freed: string[] = [];
    for (const kv of kvs) {
      if (ownerOf(kv.value) !== owner) continue;
      // Compare the revision we read, so that an address re-allocated meanwhile is not freed.
      const res = await this.store.txn({
        compare: [{ key: kv.key, modRevision: kv.modRevision }],
        ops: [{ type: "delete", key: kv.key }],
      });
      if (res.succeeded) freed.push(kv.key.slice(this.keyPrefix.length));
    }
    return freed;
  }

  async list(): Promise<{ ip: string; owner: string }[]> {
    return [...(await this.used())].map(([ip, owner]) => ({ ip, owner }));
  }
}

function ownerOf(value: string): string {
  try {
    const v = JSON.parse(value) as { owner?: unknown };
    return typeof v.owner === "string" ? v.owner : "";
  } catch {
    return "";
  }
}

function pool(store: Store, cidr: string, family: 4 | 6): Pool {
  const p = parsePrefix(cidr);
  const where = `the IPv${family} pod CIDR ${JSON.stringify(cidr)}`;
  if (!p || !cidr.includes("/")) {
    throw new MembraneError("CONFIG_INVALID", `Cannot use ${where}: it is not an address/length prefix`, {
      hint: family === 4 ? 'write it like "10.200.0.0/24"' : 'write it like "fd00:200::/64"',
    });
  }
  if (p.family !== family)
    throw new MembraneError("CONFIG_INVALID", `Cannot use ${where}: it is an IPv${p.family} prefix`);
  if (parseAddr(cidr.split("/")[0] ?? "")?.value !== p.addr) {
    throw new MembraneError("CONFIG_INVALID", `Cannot use ${where}: it has host bits set`, {
      hint: `did you mean ${prefixString(p)}?`,
    });
  }
  if (familyWidth(family) - p.bits < 2) {
    throw new MembraneError(
      "CONFIG_INVALID",
      `Cannot use ${where}: it leaves no address after the network, gateway and last address`,
      {
        hint: `use a prefix of at most /${familyWidth(family) - 2}`,
      },
    );
  }
  return new Pool(store, p);
}

export class Ipam {
  private readonly v4: Pool;
  private readonly v6: Pool | undefined;
  /** Calls in this process run one at a time, so two requests for one owner cannot both allocate. */
  private chain: Promise<unknown> = Promise.resolve();

  constructor(p: IpamParams) {
    this.v4 = pool(p.store, p.ipv4, 4);
    this.v6 = p.ipv6 === undefined ? undefined : pool(p.store, p.ipv6, 6);
  }

  /** The node-side addresses of the pod routes (first host of each CIDR). */
  gateways(): { ipv4: string; ipv6?: string } {
    return this.v6 ? { ipv4: this.v4.gateway, ipv6: this.v6.gateway } : { ipv4: this.v4.gateway };
  }

  /**
   * Allocates (or returns the already held) addresses of `owner`, e.g. "default/web-1";
   * `want` asks for exact addresses instead.
   */
  allocate(owner: string, want: AddressRequest = {}): Promise<Allocation> {
    return this.serial(() => this.allocateNow(owner, want));
  }

  /**
   * The addresses allocate() would give `owner`, without writing: the caller writes `txn` (compare
   * "absent" and put, per address it takes; empty when `owner` holds them already) in one store
   * transaction with its own keys (the endpoint's record), so a create is one store write. A txn
   * that fails lost a race to another allocator: nothing was taken.
   */
  plan(owner: string, want: AddressRequest = {}): Promise<{ allocation: Allocation; txn: TxnRequest }> {
    return this.serial(async () => {
      this.checkRequest(owner, want);
      const a4 =
        want.ipv4 !== undefined ? await this.v4.pickExact(owner, want.ipv4) : await this.v4.pick(owner);
      const v6 = this.v6;
      const a6 = !v6
        ? undefined
        : want.ipv6 !== undefined
          ? await v6.pickExact(owner, want.ipv6)
          : await v6.pick(owner);
      const txns = [a4.txn, a6?.txn].filter((t) => t !== undefined);
      return {
        allocation: a6 ? { ipv4: a4.ip, ipv6: a6.ip } : { ipv4: a4.ip },
        txn: { compare: txns.flatMap((t) => t.compare), ops: txns.flatMap((t) => t.ops) },
      };
    });
  }

  /**
   * Reads the allocations and starts watching them now (the agent's start): the first plan()
   * otherwise lists the store's prefix, which scans the whole store (50,000 remote endpoints:
   * ~100 ms under load, measured on the first create after a restart).
   */
  warm(): Promise<void> {
    return this.serial(async () => {
      await this.v4.warm();
      await this.v6?.warm();
    });
  }

  /** Frees every address `owner` holds; returns them. Freeing nothing is not an error. */
  release(owner: string): Promise<string[]> {
    return this.serial(() => this.releaseNow(owner));
  }

  private serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.chain.then(f, f);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private checkRequest(owner: string, want: AddressRequest): void {
    if (owner === "")
      throw new MembraneError("ENDPOINT_INVALID", "Cannot allocate an address: the owner name is empty");
    if (want.ipv6 !== undefined && !this.v6) {
      throw new MembraneError(
        "ENDPOINT_INVALID",
        `Cannot give ${owner} the address ${want.ipv6}: the node has no IPv6 pod CIDR`,
        { hint: "start the agent with an IPv6 pod CIDR (--pod-cidr6), or ask for an IPv4 address only" },
      );
    }
  }

  private async allocateNow(owner: string, want: AddressRequest): Promise<Allocation> {
    this.checkRequest(owner, want);
    const v6 = this.v6;
    const a4 =
      want.ipv4 !== undefined ? await this.v4.reserve(owner, want.ipv4) : await this.v4.allocate(owner);
    if (!v6) return { ipv4: a4.ip };
    try {
      const a6 = want.ipv6 !== undefined ? await v6.reserve(owner, want.ipv6) : await v6.allocate(owner);
      return { ipv4: a4.ip, ipv6: a6.ip };
    } catch (e) {
      // All or nothing: give back the IPv4 address this call took.
      if (a4.fresh) await this.v4.release(owner);
      throw e;
    }
  }

  private async releaseNow(owner: string): Promise<string[]> {
    const freed = await this.v4.release(owner);
    if (this.v6) freed.push(...(await this.v6.release(owner)));
    return freed;
  }

  /** Every allocation, IPv4 first. */
  async list(): Promise<{ ip: string; owner: string }[]> {
    return [...(await this.v4.list()), ...(this.v6 ? await this.v6.list() : [])];
  }
}
