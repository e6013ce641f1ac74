/**
 * DNS-learned names: addresses the DNS proxy saw in answers get FQDN
 * identities (toFQDNs), and the kernel enforces them before the proxy
 * releases the answer. Each (name, address) lives for max(TTL, minimum TTL);
 * an answer already known only extends that, without touching the kernel
 * (the proxy learns how long, heldUntil, and releases repeats without asking;
 * before an address leaves the kernel it withdraws that: `dropping`).
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
  /**
   * Called before (name, ip) pairs leave the kernel, after they stopped counting as held
   * (heldUntil): the proxy withdraws them from the answers it releases without asking. A failure
   * is logged and the pairs go anyway (a proxy that does not answer releases nothing).
   */
  readonly dropping?: (pairs: readonly { name: string; ip: string }[]) => Promise<void>;
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

  /**
   * Until when (ms since the epoch) every (name, ip) of `ips` stays in the kernel unless an answer
   * extends it; undefined when one of them is not held. The proxy releases repeats of the answer
   * without asking while this lasts (proxy/runtime/dns-answers.ts).
   */
  heldUntil(name: string, ips: readonly string[]): number | undefined {
    const key = nameKey(name);
    let until = Infinity;
    for (const ip of ips) until = Math.min(until, this.seen.get(ip)?.get(key) ?? -Infinity);
    return ips.length > 0 && until > -Infinity ? until : undefined;
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
      await this.dropAll(ips.map((ip): [string, string, string] => [ip, key, name]));
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
      // Extended by an answer while this waited for its turn: kept.
      const still = gone.filter(([ip, name]) => (this.seen.get(ip)?.get(name) ?? Infinity) <= this.now());
      await this.dropAll(still.map(([ip, name]): [string, string, string] => [ip, name, name]));
      this.revisions.bump();
      await this.d.enforce();
    });
  }

  /**
   * Takes [ip, key, name] out: first from what counts as held (no dns-done grants them from here
   * on), then from the proxy's held answers (`dropping`, acknowledged), and only then from policy,
   * so the proxy never releases an answer for an address the kernel no longer has.
   */
  private async dropAll(gone: readonly [string, string, string][]): Promise<void> {
    for (const [ip, key] of gone) {
      const names = this.seen.get(ip);
      names?.delete(key);
      if (names?.size === 0) this.seen.delete(ip);
    }
    if (gone.length > 0 && this.p.dropping)
      await this.p
        .dropping(gone.map(([ip, key]) => ({ name: key, ip })))
        .catch((e: unknown) =>
          this.d.logger.warn(
            { err: e instanceof Error ? e.message : String(e) },
            "the proxy did not withdraw DNS names",
          ),
        );
    for (const [ip, , name] of gone) this.d.engine().forgetDns(name, ip);
  }
}

function nameKey(name: string): string {
  return name.toLowerCase().replace(/\.$/, "");
}
