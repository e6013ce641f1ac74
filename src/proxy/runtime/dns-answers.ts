/**
 * The proxy's side of the DNS answer round trip with the agent: an answer
 * that carries addresses is released to the client only once the agent
 * says the kernel enforces them (`dns-done`), as Cilium's FQDN proxy does:
 * the client may connect at once.
 *
 *   DnsProxy.onAnswer(endpoint, name, ips, ttl) --{type: "dns-answer", id, ...}--> agent
 *                         <-- done(id, ok) <--{type: "dns-done", id, ok}--
 *
 * The DNS proxy gives up after its answerTimeoutMs (SERVFAIL); an id whose
 * answer never came is forgotten a little later (one timer for all).
 */
import { TimeoutQueue } from "../deadlines.js";
import type { FromProxy } from "./protocol.js";

export class AgentAnswers {
  private readonly pending = new Map<number, (ok: boolean) => void>();
  private next = 1;
  private readonly forget = new TimeoutQueue(5000);

  constructor(private readonly send: (m: FromProxy) => void) {}

  /** Sends the answer to the agent; settles when it says the kernel enforces its addresses (or failed). */
  onAnswer(endpoint: string, name: string, ips: readonly string[], ttl: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = this.next++;
      const forget = this.forget.add(() => this.pending.delete(id));
      this.pending.set(id, (ok) => {
        forget.cancel();
        if (ok) resolve();
        else reject(new Error("the agent did not enforce"));
      });
      // RFC 2181 §8: a TTL with the top bit set means zero.
      this.send({ type: "dns-answer", id, endpoint, name, ips, ttl: ttl > 0x7fffffff ? 0 : ttl });
    });
  }

  /** The agent's `dns-done`. */
  done(id: number, ok: boolean): void {
    this.pending.get(id)?.(ok);
    this.pending.delete(id);
  }
}
