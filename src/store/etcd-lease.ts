/**
 * A lease kept alive by this process (cluster mode: the node's one lease).
 *
 *   grant(ttl) ──▶ every ttl/3: one keep-alive (LeaseKeepAlive stream: write the ID, read the answer, end);
 *                  after one that got no answer, the next within 300 ms
 *        etcd answers TTL > 0 ──▶ alive
 *        etcd answers TTL 0   ──▶ lost (expired or revoked): onLost once, keep-alives stop
 *        no answer            ──▶ keep trying; the lease is not declared lost
 *
 * Only etcd can say a lease is gone. An etcd that was down (or lost its leader)
 * refreshes every lease's TTL when it serves again, so a holder that keeps
 * sending keep-alives keeps its lease and every key on it: nothing vanishes for
 * peers and nothing has to be put again. A node cut off from a running etcd
 * learns that its lease expired at its first keep-alive after reconnecting.
 * (etcd3's own Lease gives up after 2 TTLs without an answer, even when etcd
 * itself was down and the lease is alive: the node then re-put everything on a
 * new lease, racing the old lease's expiry, and peers saw its keys flap.)
 */
import { EtcdLeaseInvalidError, type Etcd3 } from "etcd3";

/**
 * A lease granted by etcd (cluster mode): keys put with `lease: id` are deleted when it expires.
 * Kept alive in the background (every ttl/3) until `revoke()` or `release()`; `onLost` runs once
 * when etcd says the lease is gone (its keys are then gone); an unreachable etcd is not a loss.
 */
export interface StoreLease {
  /** The lease ID as etcd's decimal string (for TxnOp.lease). */
  readonly id: string;
  readonly ttlSeconds: number;
  /** Revokes the lease: etcd deletes every key attached to it at once. */
  revoke(): Promise<void>;
  /** Stops the keep-alives without revoking (the keys live until the TTL runs out). */
  release(): void;
  /**
   * Until when (performance.now(), ms) etcd certainly still holds the lease: the send time of the
   * grant or of the last keep-alive etcd answered alive, plus the TTL it answered. etcd counts
   * that TTL from when it received the request, later, so it cannot expire the lease before this
   * time (a holder cut off from etcd uses it to stop using what the lease guards first).
   */
  confirmedUntil(): number;
}

/** One keep-alive round trip; resolves with the TTL etcd answered ("0": the lease is gone). */
async function keepAliveOnce(client: Etcd3, id: string, timeoutMs: number): Promise<string> {
  const stream = await client.leaseClient.leaseKeepAlive();
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      try {
        stream.end();
      } catch {
        // already closed
      }
    };
    const timer = setTimeout(() => {
      done();
      stream.cancel();
      reject(new Error(`no keep-alive answer within ${timeoutMs} ms`));
    }, timeoutMs);
    stream.on("data", (res) => {
      done();
      resolve(res.TTL);
    });
    stream.on("error", (err) => {
      done();
      reject(err);
    });
    stream.write({ ID: id });
  });
}

export async function grantKeptLease(
  client: Etcd3,
  ttlSeconds: number,
  onLost: (err: Error) => void,
): Promise<StoreLease> {
  const asked = performance.now();
  const { ID: id, TTL: granted } = await client.leaseClient.leaseGrant({ TTL: ttlSeconds });
  // A TTL that does not read as a number confirms nothing (the holder is then cut off at once).
  let until = asked + (Number(granted) > 0 ? Number(granted) * 1000 : 0);
  const every = Math.max(500, (ttlSeconds * 1000) / 3);
  // After a keep-alive that got no answer, the next one goes sooner: when the member this
  // client used stops, the lease lives on the others only for about one TTL after their new
  // leader is elected, and a third of the TTL per attempt left too few attempts under load
  // (the member-fault test lost its 5 s lease that way on a busy machine).
  const retry = Math.min(every, 300);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const stop = (): void => {
    stopped = true;
    clearTimeout(timer);
  };
  const next = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(() => void tick(), ms);
    timer.unref();
  };
  const tick = async (): Promise<void> => {
    if (stopped) return;
    try {
      const sent = performance.now();
      const ttl = await keepAliveOnce(client, id, every);
      if (Number(ttl) > 0) until = Math.max(until, sent + Number(ttl) * 1000);
      if (ttl === "0" && !stopped) {
        stop();
        onLost(new Error(`etcd says lease ${id} is gone (expired or revoked)`));
        return;
      }
      next(every);
    } catch {
      next(retry); // etcd unreachable: try again soon (see the header)
    }
  };
  next(every);
  return {
    id,
    ttlSeconds,
    revoke: async () => {
      stop();
      await client.leaseClient.leaseRevoke({ ID: id }).catch((e: unknown) => {
        if (!(e instanceof EtcdLeaseInvalidError)) throw e; // gone already: revoked is revoked
      });
    },
    release: stop,
    confirmedUntil: () => until,
  };
}
