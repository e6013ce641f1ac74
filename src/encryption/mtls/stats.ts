/** Per-peer counters of the tunnel process (what `membrane encryption status` shows). */
import type { PeerStats } from "./wire.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export class TunnelStats {
  private readonly peers = new Map<string, Mutable<PeerStats>>();

  of(node: string, endpoint: string): Mutable<PeerStats> {
    let s = this.peers.get(node);
    if (!s) {
      s = { node, endpoint, sessions: 0, streamsTotal: 0, streamsOpen: 0, inboundAccepted: 0, inboundRefused: 0, bytesOut: 0, bytesIn: 0 }; // prettier-ignore
      this.peers.set(node, s);
    }
    s.endpoint = endpoint;
    return s;
  }

  handshake(node: string, endpoint: string): void {
    this.of(node, endpoint).lastHandshake = new Date().toISOString();
  }

  error(node: string, endpoint: string, why: string): void {
    this.of(node, endpoint).lastError = why.slice(0, 300);
  }

  view(known: ReadonlySet<string>): PeerStats[] {
    return [...this.peers.values()].filter((p) => known.has(p.node)).map((p) => ({ ...p }));
  }
}
