/**
 * HTTP/2 cleartext sessions to backend endpoints: one session per endpoint,
 * shared by every client stream sent there, opened from the caller's source
 * address when one is set, replaced when it closes. Which endpoint takes a
 * request is chosen per request by the caller, so one client connection's
 * calls spread over every endpoint (per-request L7 load balancing, not per
 * connection). Used by the gateway (Service ports whose appProtocol is
 * `kubernetes.io/h2c` or `grpc`; source address: the `ingress` identity's)
 * and by the node proxy's lb-l7 services (proxy/lb/).
 *
 *   get(addr, port) --open session of that endpoint | http2.connect (prior knowledge)--> ClientHttp2Session
 */
import http2, { type ClientHttp2Session } from "node:http2";
import net from "node:net";

export interface H2SessionsParams {
  readonly localAddress?: string;
  /** Source address of IPv6 sessions (an IPv6 endpoint without it: localAddress, which fails: closed). */
  readonly localAddress6?: string;
  /** A session without any frame for this long is closed. */
  readonly idleTimeoutMs?: number;
}

export class H2Sessions {
  private readonly open = new Map<string, ClientHttp2Session>();

  constructor(private readonly p: H2SessionsParams = {}) {}

  get(address: string, port: number): ClientHttp2Session {
    const key = `${address}|${port}`;
    const cur = this.open.get(key);
    if (cur && !cur.closed && !cur.destroyed) return cur;
    const host = address.includes(":") ? `[${address}]` : address;
    const local = (address.includes(":") ? this.p.localAddress6 : undefined) ?? this.p.localAddress;
    const s = http2.connect(`http://${host}:${port}`, {
      createConnection: () => {
        const c = net.connect({
          host: address,
          port,
          ...(local !== undefined ? { localAddress: local } : {}),
        });
        c.setNoDelay(true);
        return c;
      },
    });
    s.on("error", () => undefined);
    s.on("close", () => {
      if (this.open.get(key) === s) this.open.delete(key);
    });
    s.setTimeout(this.p.idleTimeoutMs ?? 60_000, () => s.close());
    this.open.set(key, s);
    return s;
  }

  /**
   * Retires every session. Graceful (a policy change): streams in flight finish, the next
   * request connects anew and is judged by the current policy. Otherwise (stop): destroyed.
   */
  close(graceful = false): void {
    for (const s of this.open.values())
      if (graceful) s.close();
      else s.destroy();
    this.open.clear();
  }
}
