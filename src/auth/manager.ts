/**
 * Mutual authentication on this node: the agent's answer to a first packet held in the queue.
 *
 *   kernel: new connection, rule requires auth, pair not in @pairs --NFQUEUE--> onPacket
 *     source identity = packet mark (pre_c set it), destination = ipcache[daddr]
 *     pair cached and valid?  yes: release (PKT_AUTH_OK)
 *     no: handshake (handshake.ts: TLS 1.3, SVIDs of both identities, each side checks the other)
 *         ok: release with PKT_AUTH_OK, add (src . dst) to @pairs until the earlier SVID expiry
 *         refused / no answer in time: release without the bit; the gate drops it, logged 189
 *
 * Released without the bit rather than NF_DROP: the drop is then the kernel's, with its NFLOG
 * flow (AUTH_REQUIRED), exactly as when the agent answers nothing in time. Identities below 256
 * (host, world, ...) never authenticate; nor does an identity with no endpoint on this node (its
 * SVID is its node's to present: the cross-node handshake is not built yet), nor a revoked one.
 * Entries live in the kernel (datapath/auth-table.ts) and outlive the agent; a starting agent
 * adopts them. Concurrent first packets of one pair share one handshake.
 */
import { X509Certificate } from "node:crypto";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { IDENTITY_MASK, PKT_AUTH_OK, AUTH_QUEUE_NUM } from "../abi/marks.js";
import type { QueuedPacket } from "../abi/nfqueue-wire.js";
import type { AuthTable } from "../datapath/auth-table.js";
import { MembraneError } from "../errors.js";
import type { SvidProvider, X509Svid } from "../spiffe/provider.js";
import { localHandshake } from "./handshake.js";
import { AuthQueue } from "./queue.js";
import { packetAddresses } from "./packet.js";

export interface AuthManagerParams {
  readonly logger: Logger;
  readonly provider: SvidProvider;
  readonly table: AuthTable;
  readonly netns?: string;
  readonly nodeName: string;
  /** The identity of an address (the agent's ipcache). */
  readonly identityOf: (ip: string) => number;
  /** Identities of this node's endpoints. */
  readonly localIdentities: () => ReadonlySet<number>;
  readonly registry?: Registry;
  /** Longest a first packet waits for a handshake (default 5 s: TCP retransmits the SYN at 1 s meanwhile, held too). */
  readonly handshakeTimeoutMs?: number;
}

export interface AuthPairView {
  readonly source: number;
  readonly destination: number;
  readonly node: string;
  readonly expires: string;
}

interface Pair {
  readonly src: number;
  readonly dst: number;
  expiresMs: number;
}

const key = (s: number, d: number): string => `${s}.${d}`;
const FIRST_CLUSTER_IDENTITY = 256;

export class AuthManager {
  private readonly pairs = new Map<string, Pair>();
  private readonly inflight = new Map<string, Promise<boolean>>();
  private readonly revoked = new Set<number>();
  private readonly queue: AuthQueue;
  private readonly handshakes: Counter<"result">;
  private readonly latency: Histogram;
  private readonly now = Date.now;

  constructor(private readonly p: AuthManagerParams) {
    this.queue = new AuthQueue({
      queue: AUTH_QUEUE_NUM,
      ...(p.netns !== undefined ? { netns: p.netns } : {}),
      onPacket: (pkt) => void this.onPacket(pkt),
      onError: (e) => p.logger.error({ err: e.message }, "the authentication queue reader failed: new pairs are refused"), // prettier-ignore
    });
    const registers = p.registry ? [p.registry] : [];
    this.handshakes = new Counter({ name: "membrane_auth_handshakes_total", help: "Mutual-authentication handshakes by result (success, failure, timeout)", labelNames: ["result"], registers }); // prettier-ignore
    this.latency = new Histogram({ name: "membrane_auth_handshake_duration_seconds", help: "Time from a held first packet to its verdict", buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2], registers }); // prettier-ignore
  }

  /** Installs the table and queue rule, adopts the kernel's pairs, and starts answering the queue. */
  async start(): Promise<void> {
    await this.p.table.install();
    for (const e of await this.p.table.list()) {
      this.pairs.set(key(e.src, e.dst), { src: e.src, dst: e.dst, expiresMs: this.now() + e.expiresSeconds * 1000 }); // prettier-ignore
    }
    if (this.pairs.size > 0) this.p.logger.info({ pairs: this.pairs.size }, "adopted authenticated pairs");
    await this.queue.start();
  }

  async stop(): Promise<void> {
    await this.queue.stop();
  }

  /** The authenticated pairs the kernel holds (expired ones are gone there too). */
  async list(): Promise<AuthPairView[]> {
    const now = this.now();
    return (await this.p.table.list())
      .map((e) => ({
        source: e.src,
        destination: e.dst,
        node: this.p.nodeName,
        expires: new Date(now + e.expiresSeconds * 1000).toISOString(),
      })) // prettier-ignore
      .sort((a, b) => a.source - b.source || a.destination - b.destination);
  }

  /** The identity's current X.509-SVID without its key: PEM chain and validity. */
  svid(identity: number): Record<string, unknown> | undefined {
    const s = this.p.provider.current(identity);
    if (!s) return undefined;
    const pem = s.chain.map((d) => new X509Certificate(d).toString()).join("");
    return { ...s.toJSON(), revoked: this.revoked.has(identity), certificates: pem };
  }

  /**
   * Withholds the identity's SVID from handshakes and removes its pairs (as deleting its SPIRE
   * registration entry would): its new connections under rules requiring auth drop with 189.
   */
  async revoke(identity: number): Promise<number> {
    this.revoked.add(identity);
    const gone = [...this.pairs.values()].filter((x) => x.src === identity || x.dst === identity);
    for (const k of (await this.p.table.list()).filter((e) => e.src === identity || e.dst === identity))
      if (!gone.some((g) => g.src === k.src && g.dst === k.dst))
        gone.push({ src: k.src, dst: k.dst, expiresMs: 0 });
    for (const g of gone) this.pairs.delete(key(g.src, g.dst));
    await this.p.table.remove(gone);
    return gone.length;
  }

  restore(identity: number): boolean {
    return this.revoked.delete(identity);
  }

  get revokedIdentities(): number[] {
    return [...this.revoked].sort((a, b) => a - b);
  }

  private async onPacket(pkt: QueuedPacket): Promise<void> {
    const t0 = performance.now();
    let ok = false;
    try {
      ok = await this.authenticate(pkt);
    } catch (e) {
      this.p.logger.warn({ err: (e as Error).message }, "mutual authentication failed: the packet drops (AUTH_REQUIRED)"); // prettier-ignore
    }
    this.latency.observe((performance.now() - t0) / 1000);
    // Without the bit the gate drops the packet and logs it (189).
    this.queue.verdict(pkt, true, ok ? (pkt.mark | PKT_AUTH_OK) >>> 0 : pkt.mark & ~PKT_AUTH_OK);
  }

  private async authenticate(pkt: QueuedPacket): Promise<boolean> {
    const addrs = packetAddresses(pkt.payload);
    if (!addrs) throw new MembraneError("AUTH_HANDSHAKE_FAILED", "Cannot authenticate: the queued packet is not IPv4 or IPv6"); // prettier-ignore
    const src = pkt.mark & IDENTITY_MASK;
    const dst = this.p.identityOf(addrs.dst);
    const k = key(src, dst);
    const have = this.pairs.get(k);
    if (have && have.expiresMs > this.now() + 1000) return true;
    let run = this.inflight.get(k);
    if (!run) {
      run = this.handshake(src, dst).finally(() => this.inflight.delete(k));
      this.inflight.set(k, run);
    }
    return run;
  }

  private async handshake(src: number, dst: number): Promise<boolean> {
    const refuse = (why: string): never => {
      throw new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate ${src} -> ${dst}: ${why}`);
    };
    try {
      for (const id of [src, dst]) {
        if (id < FIRST_CLUSTER_IDENTITY) refuse(`identity ${id} is reserved: it has no SVID`);
        if (this.revoked.has(id)) refuse(`identity ${id} is revoked`);
        if (!this.p.localIdentities().has(id)) refuse(`identity ${id} has no endpoint on this node (the cross-node handshake is not built)`); // prettier-ignore
      }
      const [a, b] = await Promise.all([this.p.provider.ensure(src), this.p.provider.ensure(dst)]);
      const creds = (s: X509Svid) => ({ chain: s.chain, key: () => s.privateKeyPkcs8() });
      const r = await localHandshake({
        client: { creds: creds(a), expectPeer: b.spiffeId },
        server: { creds: creds(b), expectPeer: a.spiffeId },
        bundle: this.p.provider.bundle(),
        trustDomain: this.p.provider.trustDomain,
        timeoutMs: this.p.handshakeTimeoutMs ?? 5000,
      });
      const ttlMs = r.notAfter.getTime() - this.now();
      if (ttlMs < 2000) refuse("an SVID expires within 2 s");
      this.pairs.set(key(src, dst), { src, dst, expiresMs: this.now() + ttlMs });
      this.handshakes.inc({ result: "success" });
      this.p.logger.info(
        { source: src, destination: dst, ms: Math.round(r.ms * 10) / 10 },
        "pair authenticated",
      );
      // The held packet goes now; the kernel entry follows (later connections skip the queue).
      void this.p.table
        .add(src, dst, Math.floor(ttlMs / 1000))
        .catch((e: unknown) => this.p.logger.error({ err: (e as Error).message }, "cannot write the authenticated pair")); // prettier-ignore
      return true;
    } catch (e) {
      this.handshakes.inc({ result: /within \d+ ms/.test((e as Error).message) ? "timeout" : "failure" });
      throw e;
    }
  }
}
