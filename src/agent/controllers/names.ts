/**
 * DNS-learned names: addresses the DNS proxy saw in answers get FQDN
 * identities (toFQDNs), and the kernel enforces them before the proxy
 * releases the answer. Each (name, address) lives for max(TTL, minimum TTL);
 * an answer already known only extends that, without touching the kernel.
 * Expired ones are forgotten periodically: new connections to them are then
 * denied until resolved again. Not persisted (a restarted agent learns again).
 */
import { Revisions, type Controller, type ControllerDeps } from "../controller.js";

/** Cilium's default --tofqdns-min-ttl. */
export const DEFAULT_DNS_MIN_TTL = 3600;
/** How often expired DNS-learned addresses are looked for. */
export const DNS_GC_MS = 5000;

export interface NamesParams {
  /** Shortest life of a DNS-learned address, in seconds. Default 3600. */
  readonly minTtlSeconds?: number;
  /** The clock (ms since the epoch); tests pass their own. */
  readonly now?: () => number;
}

interface Pending {
  readonly name: string;
  readonly key: string;
  readonly ips: readonly string[];
  readonly until: number;
}

export class NamesController implements Controller {
  readonly name = "names";
  readonly revisions = new Revisions();
  /** address -> name -> expiry (ms since the epoch) of what DNS answers taught. */
  private readonly seen = new Map<string, Map<string, number>>();
  private pending: Pending[] = [];
  private flush: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly now: () => number;

  constructor(
    private readonly d: ControllerDeps,
    private readonly p: NamesParams = {},
  ) {
    this.now = p.now ?? Date.now;
  }

  /** Looks for expired names every `intervalMs` until stop(). */
  start(intervalMs = DNS_GC_MS): void {
    this.timer = setInterval(
      () => void this.expire().catch((e) => this.d.logger.error({ err: String(e) }, "DNS expiry failed")),
      intervalMs,
    );
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** (address, name) pairs learned and not yet expired, for status and tests. */
  get size(): number {
    let n = 0;
    for (const names of this.seen.values()) n += names.size;
    return n;
  }

  /**
   * The names DNS answers gave for `ip` and not yet expired, sorted (Hubble's source_names /
   * destination_names); undefined when none. Called per flow: one map lookup.
   */
  namesOf(ip: string): string[] | undefined {
    const names = this.seen.get(ip);
    if (names === undefined || names.size === 0) return undefined;
    const now = this.now();
    const out = [...names].filter(([, until]) => until > now).map(([n]) => n);
    return out.length === 0 ? undefined : out.sort();
  }

  /** A DNS answer the proxy let through; resolves once the kernel enforces its new addresses. */
  async answer(name: string, ips: readonly string[], ttl: number): Promise<void> {
    const key = nameKey(name);
    const until = this.now() + Math.max(ttl, this.p.minTtlSeconds ?? DEFAULT_DNS_MIN_TTL) * 1000;
    const fresh = ips.filter((ip) => !this.seen.get(ip)?.has(key));
    for (const ip of ips) {
      const names = this.seen.get(ip);
      if (names?.has(key)) names.set(key, Math.max(names.get(key) ?? 0, until));
    }
    if (fresh.length === 0) return;
    // Answers arriving while an enforce runs are batched into the next one: one
    // recompute and one nft transaction for a burst of new names, not one each.
    this.pending.push({ name, key, ips: fresh, until });
    this.flush ??= this.d.serial(async () => {
      const batch = this.pending;
      this.pending = [];
      this.flush = undefined;
      for (const b of batch) this.d.engine().observeDns({ name: b.name, ips: b.ips });
      this.revisions.bump();
      await this.d.enforce();
      for (const b of batch) {
        for (const ip of b.ips) {
          let names = this.seen.get(ip);
          if (!names) this.seen.set(ip, (names = new Map()));
          names.set(b.key, Math.max(names.get(b.key) ?? 0, b.until));
        }
      }
    });
    await this.flush;
  }

  /** Forgets the addresses of `name` as if they had expired; resolves once enforced. */
  forget(name: string, ips: readonly string[]): Promise<void> {
    const key = nameKey(name);
    return this.d.serial(async () => {
      for (const ip of ips) this.drop(ip, key, name);
      this.revisions.bump();
      await this.d.enforce();
    });
  }

  /** Forgets expired addresses (one enforce for all of them). */
  async expire(): Promise<void> {
    const gone: [string, string][] = [];
    for (const [ip, names] of this.seen)
      for (const [name, until] of names) if (until <= this.now()) gone.push([ip, name]);
    if (gone.length === 0) return;
    await this.d.serial(async () => {
      for (const [ip, name] of gone) {
        // Extended by an answer while this waited for its turn: kept.
        if ((this.seen.get(ip)?.get(name) ?? Infinity) > this.now()) continue;
        this.drop(ip, name, name);
      }
      this.revisions.bump();
      await this.d.enforce();
    });
  }

  private drop(ip: string, key: string, name: string): void {
    const names = this.seen.get(ip);
    names?.delete(key);
    if (names?.size === 0) this.seen.delete(ip);
    this.d.engine().forgetDns(name, ip);
  }
}

function nameKey(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}
