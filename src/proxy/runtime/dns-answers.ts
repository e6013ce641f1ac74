/**
 * The proxy's side of the DNS answer round trip with the agent: an answer
 * that carries addresses is released to the client only once the kernel
 * enforces them, as Cilium's FQDN proxy does (the client may connect at once).
 *
 *   onAnswer(endpoint, name, ips, ttl)
 *     every (name, ip) held by the agent until later than now + HELD_MARGIN_MS
 *       --> undefined: release now; the answer goes to the agent in passing (dns-seen, coalesced)
 *     else --{type: "dns-answer", id, ...}--> agent (learns, enforces)
 *          <--{type: "dns-done", id, ok, until?}-- settles; `until` is remembered per (name, ip)
 *   agent --{type: "dns-forget", id, pairs?}--> the pairs (absent: all) are no longer held
 *         <--{type: "dns-forgot", id}--  (only then does the agent take them out of the kernel)
 *
 * Why the cache says exactly what asking again would say: the agent answers
 * an answer whose every (name, ip) it already enforces at once, without
 * touching the kernel, and only extends their life (agent/controllers/names.ts).
 * `until` is that life's end on the agent's clock (the same machine's
 * Date.now), sent with dns-done in the same turn as the agent read it; an
 * address leaves the kernel only after this process acknowledged dns-forget
 * for it, and the agent stops granting `until` for it before it sends that.
 * The answers served from the cache still reach the agent (dns-seen, within
 * SEEN_FLUSH_MS), so their addresses live as long as if each had been asked:
 * the margin keeps that notice well ahead of the agent's expiry.
 *
 * The DNS proxy gives up after its answerTimeoutMs (SERVFAIL); an id whose
 * answer never came is forgotten a little later (one timer for all).
 */
import { TimeoutQueue } from "../deadlines.js";
import { MAX_SEEN, type DnsForgetPair, type DnsSeen, type FromProxy } from "./protocol.js";

/** A cached (name, ip) counts only while the agent holds it this much longer: dns-seen's way there, with room. */
export const HELD_MARGIN_MS = 10_000;
/** Answers released from the cache reach the agent in one message per this interval at most. */
export const SEEN_FLUSH_MS = 250;
/** The most names held; past that the cache starts over (a flood of names costs round trips, never memory). */
const MAX_HELD_NAMES = 4096;

/** The agent's key of a name (agent/controllers/names.ts): case and the trailing dot do not matter. */
export const dnsNameKey = (name: string): string => {
  // Per answer: endsWith and slice, not a regular expression's replace (the same result).
  const lower = name.toLowerCase();
  return lower.endsWith(".") ? lower.slice(0, -1) : lower;
};

interface Pending {
  readonly name: string;
  readonly ips: readonly string[];
  readonly settle: (ok: boolean) => void;
}

export interface AgentAnswersStats {
  /** Answers released without waiting (every address held by the agent), and those sent to wait for it. */
  held: number;
  asked: number;
}

export class AgentAnswers {
  readonly stats: AgentAnswersStats = { held: 0, asked: 0 };
  private readonly pending = new Map<number, Pending>();
  private next = 1;
  private readonly forget = new TimeoutQueue(5000);
  /** name key -> ip -> until (ms since the epoch, the agent's clock: the same machine's). */
  private readonly heldUntil = new Map<string, Map<string, number>>();
  private seen = new Map<string, DnsSeen>();
  private seenTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly send: (m: FromProxy) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * The answer's addresses, enforced: undefined when the agent already enforces all of them (release
   * now), else a promise that settles when the agent says so (rejects when it failed).
   */
  onAnswer(endpoint: string, name: string, ips: readonly string[], ttl: number): Promise<void> | undefined {
    // RFC 2181 §8: a TTL with the top bit set means zero.
    const t = ttl > 0x7fffffff ? 0 : ttl;
    const key = this.keyOf(name);
    if (this.held(key, ips)) {
      this.stats.held++;
      this.noteSeen(key, endpoint, name, ips, t);
      return undefined;
    }
    this.stats.asked++;
    return new Promise<void>((resolve, reject) => {
      const id = this.next++;
      const forget = this.forget.add(() => this.pending.delete(id));
      this.pending.set(id, {
        name: key,
        ips,
        settle: (ok) => {
          forget.cancel();
          if (ok) resolve();
          else reject(new Error("the agent did not enforce"));
        },
      });
      this.send({ type: "dns-answer", id, endpoint, name, ips, ttl: t });
    });
  }

  /** The agent's `dns-done`; `until`: how long it holds every (name, ip) of that answer. */
  done(id: number, ok: boolean, until?: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (ok && until !== undefined) this.hold(p.name, p.ips, until);
    p.settle(ok);
  }

  /**
   * The agent's `dns-forget`: these pairs (absent: every one) are no longer held. An answer released
   * before it but not yet told (dns-seen) loses them too: asked, it would have reached the agent
   * before the forget, which then took them out; told after, it would teach them again.
   */
  forgetPairs(pairs: readonly DnsForgetPair[] | undefined): void {
    if (pairs === undefined) {
      this.heldUntil.clear();
      this.seen.clear();
      return;
    }
    const gone = new Set<string>();
    for (const { name, ip } of pairs) {
      const key = dnsNameKey(name);
      gone.add(`${key} ${ip}`);
      const ips = this.heldUntil.get(key);
      ips?.delete(ip);
      if (ips?.size === 0) this.heldUntil.delete(key);
    }
    for (const [k, a] of this.seen) {
      const key = dnsNameKey(a.name);
      const ips = a.ips.filter((ip) => !gone.has(`${key} ${ip}`));
      if (ips.length === a.ips.length) continue;
      if (ips.length === 0) this.seen.delete(k);
      else this.seen.set(k, { ...a, ips });
    }
  }

  private held(key: string, ips: readonly string[]): boolean {
    if (ips.length === 0) return false;
    const known = this.heldUntil.get(key);
    if (!known) return false;
    const by = this.now() + HELD_MARGIN_MS;
    for (const ip of ips) if (!((known.get(ip) ?? 0) > by)) return false;
    return true;
  }

  private hold(key: string, ips: readonly string[], until: number): void {
    let known = this.heldUntil.get(key);
    if (!known) {
      if (this.heldUntil.size >= MAX_HELD_NAMES) this.heldUntil.clear();
      this.heldUntil.set(key, (known = new Map()));
    }
    for (const ip of ips) known.set(ip, until);
  }

  /**
   * The last name's key, and the last one-address answer's key in `seen`: most answers repeat the
   * one before, and the same strings again are found in the maps by identity (hashed once) where
   * new ones would be built, hashed and compared each time.
   */
  private lastName = "";
  private lastKey = "";
  private lastSeenName = "";
  private lastSeenIp = "";
  private lastSeenKey = "";

  private keyOf(name: string): string {
    if (name !== this.lastName) {
      this.lastKey = dnsNameKey(name);
      this.lastName = name;
    }
    return this.lastKey;
  }

  /** Repeats of one answer within SEEN_FLUSH_MS go as one, with the longest TTL (the agent keeps the longest life). */
  private noteSeen(key: string, endpoint: string, name: string, ips: readonly string[], ttl: number): void {
    const k = ips.length === 1 ? this.seenKey(key, ips[0] as string) : `${key} ${ips.join(" ")}`;
    const had = this.seen.get(k);
    if (had === undefined || had.ttl < ttl) this.seen.set(k, { endpoint, name, ips, ttl });
    if (this.seenTimer === undefined) {
      this.seenTimer = setTimeout(() => this.flushSeen(), SEEN_FLUSH_MS);
      this.seenTimer.unref();
    }
  }

  /** `seen`'s key of a one-address answer (no join): the same string as last time when both repeat. */
  private seenKey(key: string, ip: string): string {
    if (key !== this.lastSeenName || ip !== this.lastSeenIp || this.lastSeenKey === "") {
      this.lastSeenKey = `${key} ${ip}`;
      this.lastSeenName = key;
      this.lastSeenIp = ip;
    }
    return this.lastSeenKey;
  }

  private flushSeen(): void {
    this.seenTimer = undefined;
    const all = [...this.seen.values()];
    this.seen = new Map();
    for (let i = 0; i < all.length; i += MAX_SEEN)
      this.send({ type: "dns-seen", answers: all.slice(i, i + MAX_SEEN) });
  }
}
