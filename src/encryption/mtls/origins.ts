/**
 * The receiving side's record of the connections its tunnel opens to this node's pods, so that
 * flows name the source pod a connection came from, not the pod gateway the tunnel connects from.
 *
 *   tunnel: origin? {local port P, destination B:port, source A, identity n}  (before it connects)
 *     --note()--> kept only when A is not this node's and the ipcache gives A identity n (the
 *                 identity the peer's certificate proved): a claim the agent checks
 *   flow of a packet gateway:P -> B:port marked n --find(B, port, P)--> {A, n}
 *
 * Visibility only: policy judges the mark (the certificate's identity), never this record.
 * Bounded: at most `max` entries, each kept `ttlMs` (flows are logged at a connection's start).
 */
import { inPrefixes } from "../mode.js";
import { parseAddr, type Prefix } from "../../labels/cidr.js";
import type { TunnelOrigin } from "./wire.js";

const MIN_POD_IDENTITY = 256;

export interface OriginsDeps {
  /** The identity the agent gives an address now (its engine's ipcache). */
  readonly identityOf: (ip: string) => number | undefined;
  /** This node's pod CIDRs: a source there is never a peer's pod. */
  readonly local: readonly Prefix[];
  readonly max?: number;
  readonly ttlMs?: number;
  readonly now?: () => number;
}

export interface Origin {
  /** The source pod's address. */
  readonly ip: string;
  readonly identity: number;
}

export class TunnelOrigins {
  private readonly byKey = new Map<string, Origin & { readonly at: number }>();
  private readonly max: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  /** Claims refused (the address has another identity, is ours, or is no address). */
  refused = 0;

  constructor(private readonly d: OriginsDeps) {
    this.max = d.max ?? 65_536;
    this.ttlMs = d.ttlMs ?? 120_000;
    this.now = d.now ?? Date.now;
  }

  /** Records `o` when its claim holds; whether it did. */
  note(o: TunnelOrigin): boolean {
    const ok =
      parseAddr(o.source) !== undefined &&
      !inPrefixes(this.d.local, o.source) &&
      o.identity >= MIN_POD_IDENTITY &&
      this.d.identityOf(o.source) === o.identity;
    const key = `${o.port}|${o.destination}|${o.destinationPort}`;
    this.byKey.delete(key); // a reused port: the old connection's record goes
    if (!ok) {
      this.refused++;
      return false;
    }
    this.byKey.set(key, { ip: o.source, identity: o.identity, at: this.now() });
    for (const k of this.byKey.keys()) {
      if (this.byKey.size <= this.max) break;
      this.byKey.delete(k);
    }
    return true;
  }

  /** The source pod of the tunnel's connection from local port `port` to `destination`:`destinationPort`. */
  find(destination: string, destinationPort: number, port: number): Origin | undefined {
    const key = `${port}|${destination}|${destinationPort}`;
    const e = this.byKey.get(key);
    if (e === undefined) return undefined;
    if (this.now() - e.at > this.ttlMs) {
      this.byKey.delete(key);
      return undefined;
    }
    return { ip: e.ip, identity: e.identity };
  }

  get size(): number {
    return this.byKey.size;
  }
}
