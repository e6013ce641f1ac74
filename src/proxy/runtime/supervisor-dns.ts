/**
 * The agent's side of the DNS messages with one proxy process (supervisor.ts
 * hands them here): answers to enforce, answers released in passing, and
 * withdrawals of what the process may release without asking.
 *
 *   proxy --dns-answer--> onDnsAnswer (learn, enforce) --> dns-done {ok, until: dnsHeldUntil()}
 *   proxy --dns-seen-->   onDnsAnswer for each (extends the addresses' life; nothing to answer)
 *   forget(pairs) --dns-forget--> proxy --dns-forgot--> resolves (then the agent changes the kernel)
 *
 * `until` is read in the same turn as dns-done is sent: a dns-forget sent
 * later reaches the process after it (one ordered channel), so the process
 * never holds a pair past its withdrawal (runtime/dns-answers.ts).
 */
import type { Logger } from "pino";
import {
  MAX_FORGET_PAIRS,
  type DnsForgetPair,
  type DnsSeen,
  type FromProxy,
  type ToProxy,
} from "./protocol.js";

/** How long a withdrawal waits for the process's acknowledgement. */
const FORGET_WAIT_MS = 5000;

export interface DnsRelayParams {
  readonly logger: Logger;
  /** Puts the answer's addresses into policy and the kernel; resolves when they are enforced. */
  readonly onDnsAnswer: (
    endpoint: string,
    name: string,
    ips: readonly string[],
    ttl: number,
  ) => Promise<void>;
  /**
   * Until when (ms since the epoch) the agent holds every (name, ip) of an answer in the kernel;
   * undefined when it does not hold them all. Sent with dns-done: the proxy then releases repeats
   * of the answer without asking.
   */
  readonly dnsHeldUntil?: (name: string, ips: readonly string[]) => number | undefined;
}

type DnsMessage = Extract<FromProxy, { type: "dns-answer" | "dns-seen" | "dns-forgot" }>;

export class DnsRelay {
  private readonly forgets = new Map<number, () => void>();
  private next = 1;

  constructor(
    private readonly p: DnsRelayParams,
    private readonly send: (m: ToProxy) => void,
  ) {}

  onMessage(m: DnsMessage): void {
    if (m.type === "dns-answer") {
      this.p.onDnsAnswer(m.endpoint, m.name, m.ips, m.ttl).then(
        () => {
          const until = this.p.dnsHeldUntil?.(m.name, m.ips);
          this.send({ type: "dns-done", id: m.id, ok: true, ...(until !== undefined ? { until } : {}) });
        },
        (e: unknown) => {
          this.notEnforced(m.name, e);
          this.send({ type: "dns-done", id: m.id, ok: false });
        },
      );
    } else if (m.type === "dns-seen") this.seen(m.answers);
    else {
      this.forgets.get(m.id)?.();
      this.forgets.delete(m.id);
    }
  }

  /** Released at once because their addresses were held: their life is extended as for any answer. */
  private seen(answers: readonly DnsSeen[]): void {
    for (const a of answers)
      this.p.onDnsAnswer(a.endpoint, a.name, a.ips, a.ttl).catch((e: unknown) => this.notEnforced(a.name, e));
  }

  private notEnforced(name: string, e: unknown): void {
    this.p.logger.warn({ name, err: e instanceof Error ? e.message : String(e) }, "DNS answer not enforced");
  }

  /** Withdraws pairs from the process's held answers; resolves on its acknowledgement (of every message). */
  async forget(pairs: readonly DnsForgetPair[]): Promise<void> {
    // Named pairs always (never "all": the process also drops them from answers not yet told).
    const parts: Promise<void>[] = [];
    for (let i = 0; i < pairs.length; i += MAX_FORGET_PAIRS) parts.push(this.forgetPart(pairs.slice(i, i + MAX_FORGET_PAIRS))); // prettier-ignore
    await Promise.all(parts);
  }

  private forgetPart(pairs: readonly DnsForgetPair[]): Promise<void> {
    const id = this.next++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.forgets.delete(id);
        reject(new Error(`the proxy did not withdraw the DNS names within ${FORGET_WAIT_MS} ms`));
      }, FORGET_WAIT_MS);
      this.forgets.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      this.send({ type: "dns-forget", id, pairs });
    });
  }

  /** The process exited: what it held went with it. */
  gone(): void {
    for (const done of this.forgets.values()) done();
    this.forgets.clear();
  }
}
