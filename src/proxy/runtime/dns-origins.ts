/**
 * Where each DNS query was going: the original destination (and ct mark) of its conntrack entry,
 * asked of the conntrack broker, and for UDP remembered per source while the kernel says the
 * datagram belongs to the same entry.
 *
 *   datagram (src address:port, mark = ct id: datapath/compile-nat.ts dnsIdRules, read with SO_RCVMARK)
 *     | cached for src and cached.ctId === mark (mark != 0) --> the cached Original (no IPC)
 *     v otherwise
 *   broker.lookup --> Original {address, port, mark, ctId} --> remembered if ctId === mark (mark != 0)
 *
 * Why the id: a UDP source keeps its port across queries (glibc sends A and AAAA from one socket,
 * the bench's channels reuse theirs), so one conntrack lookup per source would do. But userspace
 * cannot tell from the address and port alone that a datagram still belongs to the entry it
 * asked about: after the entry is deleted (`conntrack -D`, early drop, a flush) or expires, the
 * same source address and port can be DNATed here as a new entry with another original
 * destination, which must be judged by that server's rules and forwarded to it. The kernel writes
 * the entry's id into each redirected datagram's mark, after routing, and the broker's answer
 * carries the id of the entry it read (CTA_ID): a cached answer is used only for a datagram of
 * that same entry. The id is siphash(entry pointer, master, netns, hash of the original tuple)
 * under a boot-random key (nf_ct_get_id): two entries with different original tuples share one
 * only by a keyed 32-bit collision. An entry replaced with the same original tuple (same
 * destination) may keep its id; the cached destination is then still right. Mark 0 is "no id"
 * (no rule, a kernel without SO_RCVMARK, the dgram path): such a datagram always asks.
 *
 * Only conntrack's facts are kept: the verdict (PolicyTable.identify) is computed per query from
 * the table of the moment. The entry's ct mark is fixed where the proxy reads it (CT_FROM_HOST is
 * set when the entry is created). TCP asks once per connection, as before. Bounded: at most `max`
 * sources, the oldest remembered goes first; no timers (an entry that is gone is never matched:
 * its datagrams no longer exist).
 */
import type { Source } from "../dns/exchange.js";
import { Peer } from "../dns/native-io.js";
import type { L7Proto } from "../types.js";
import type { Broker, Original } from "./broker-client.js";
import type { Addr } from "./table.js";

export const MAX_CACHED_ORIGINS = 65_536;

export class DnsOrigins {
  /** Broker round trips and answers from the cache (tests, diagnostics). */
  readonly stats = { lookups: 0, hits: 0 };
  private readonly cache = new Map<SourceKey, Original>();

  constructor(
    private readonly broker: Pick<Broker, "lookup">,
    /** The listener's own address and port (the reply tuple's source). */
    private readonly local: Addr,
    private readonly max = MAX_CACHED_ORIGINS,
  ) {}

  /** The query's original destination: at once when cached for this entry, else from the broker. */
  of(src: Source, proto: L7Proto): Original | undefined | Promise<Original | undefined> {
    if (proto !== "UDP") {
      this.stats.lookups++;
      return this.broker.lookup("tcp", this.local, { address: src.address, port: src.port });
    }
    const mark = src.mark ?? 0;
    const key = mark === 0 ? undefined : sourceKey(src);
    if (key !== undefined) {
      const hit = this.cache.get(key);
      if (hit !== undefined && hit.ctId === mark) {
        this.stats.hits++;
        return hit;
      }
    }
    this.stats.lookups++;
    const asked = this.broker.lookup("udp", this.local, { address: src.address, port: src.port });
    if (key === undefined) return asked;
    return asked.then((o) => {
      // The entry the broker read is the one this datagram came with: later ones of it may skip the asking.
      if (o !== undefined && o.ctId === mark) this.remember(key, o);
      return o;
    });
  }

  private remember(key: SourceKey, o: Original): void {
    this.cache.delete(key);
    if (this.cache.size >= this.max) {
      const oldest = this.cache.keys().next();
      if (oldest.done !== true) this.cache.delete(oldest.value);
    }
    this.cache.set(key, o);
  }
}

/** A source's address and port: a number for an IPv4 peer of the native path, else a string. */
type SourceKey = number | string;

/**
 * An IPv4 peer's key is its address's 32 bits times 65,536 plus its port (exact: under 2^48), read
 * from the record the add-on filled; a string built and hashed per query cost more. Numbers and
 * strings never equal each other, so the two kinds of key cannot collide.
 */
const sourceKey = (src: Source): SourceKey =>
  src instanceof Peer && src.family === 4 ? (src.w0 >>> 0) * 65536 + src.port : `${src.address} ${src.port}`;
