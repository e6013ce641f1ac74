/**
 * The SPIFFE identity provider of a node: one X.509-SVID per identity of its endpoints, signed by
 * the trust domain's CA, rotated at half life, and the trust bundle; listeners learn each change.
 *
 *   identities in use --retain/ensure--> SvidProvider --current(id)/bundle()--> Workload API, (next) handshake
 *                                          | timer: SVID half life, root lifecycle (ca.ts)
 *                                          v
 *                                   subscribe(): {kind:"svid", identity} | {kind:"bundle"}
 *
 * Single node: this agent issues (its CA root key in a 0600 file, ca-file.ts). Cluster: every node
 * keeps its own root key in its own file and publishes its root certificates in its node record
 * (`auth.roots`, auth/cluster.ts); the bundle is the union of the published roots (setPeerRoots;
 * nothing secret is ever in the store). Designed, not built: a node that does not issue attests
 * to an issuer over mTLS with its etcd client certificate (CN = its node name, checked against the
 * node registry) or, before it has one, with a one-time join token; it sends a CSR per identity of
 * its endpoints and the issuer signs only identities the cluster store says exist.
 *
 * Private keys: an SVID's key is generated here, kept in memory, and handed only to the Workload
 * API of an endpoint of that identity (and, next, the handshake); X509Svid leaves it out of
 * JSON.stringify and util.inspect.
 */
import { X509Certificate } from "node:crypto";
import { inspect } from "node:util";
import type { Logger } from "pino";
import { exportPkcs8, newKeyPair } from "./certs.js";
import { SpiffeCa, type CaParams } from "./ca.js";
import { identitySpiffeId } from "./id.js";

/** One identity's current X.509-SVID. */
export class X509Svid {
  readonly #key: Buffer;
  constructor(
    readonly identity: number,
    readonly spiffeId: string,
    /** Leaf first, DER. */
    readonly chain: readonly Buffer[],
    key: Buffer,
    readonly serial: string,
    readonly notBefore: Date,
    readonly notAfter: Date,
    /** When it is replaced (half life), ms since epoch. */
    readonly rotateAt: number,
  ) {
    this.#key = key;
  }
  /** The private key, PKCS#8 DER: for the workload of this identity only. */
  privateKeyPkcs8(): Buffer {
    return this.#key;
  }
  /** The chain's certificates as PEM (public: no key). */
  pem(): string {
    return this.chain.map((d) => new X509Certificate(d).toString()).join("");
  }
  toJSON(): Record<string, unknown> {
    const { identity, spiffeId, serial } = this;
    return { identity, spiffeId, serial, notBefore: this.notBefore.toISOString(), notAfter: this.notAfter.toISOString() }; // prettier-ignore
  }
  [inspect.custom](): Record<string, unknown> {
    return this.toJSON();
  }
}

const RETRY_MS = 5000;

export type SpiffeEvent = { readonly kind: "svid"; readonly identity: number } | { readonly kind: "bundle" };

export interface ProviderParams extends CaParams {
  readonly logger: Logger;
  /** Run the rotation timer (default true; tests call tick() with their own clock). */
  readonly timers?: boolean;
}

export class SvidProvider {
  private readonly svids = new Map<number, X509Svid>();
  private readonly pending = new Map<number, Promise<X509Svid>>();
  private readonly listeners = new Set<(e: SpiffeEvent) => void>();
  private timer: NodeJS.Timeout | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private failed = false;
  private peerRoots: Buffer[] = [];
  private peerKey = "";
  private peerRev = 0;
  private readonly now: () => number;

  private constructor(
    readonly ca: SpiffeCa,
    private readonly p: ProviderParams,
  ) {
    this.now = p.now ?? Date.now;
  }

  static async start(p: ProviderParams): Promise<SvidProvider> {
    const sp = new SvidProvider(await SpiffeCa.open(p), p);
    sp.schedule();
    return sp;
  }

  get trustDomain(): string {
    return this.ca.trustDomain;
  }

  /** The trust bundle: this node's roots and those other nodes of the cluster publish. */
  bundle(): Buffer[] {
    return [...this.ca.bundle(), ...this.peerRoots];
  }

  /** This node's own roots (what it publishes to the other nodes). */
  ownRoots(): Buffer[] {
    return this.ca.bundle();
  }

  get bundleRevision(): number {
    return this.ca.bundleRevision * 1_000_000 + this.peerRev;
  }

  /**
   * The roots other nodes of the cluster publish (auth/cluster.ts): trusted beside this node's.
   * Listeners hear of a change (the Workload API's bundle stream, the pairs' re-check).
   */
  setPeerRoots(roots: readonly Buffer[]): void {
    const own = new Set(this.ca.bundle().map((b) => b.toString("base64")));
    const next = [...new Map(roots.map((r) => [r.toString("base64"), r])).entries()]
      .filter(([k]) => !own.has(k))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, r]) => r);
    const key = next.map((r) => r.toString("base64")).join(",");
    if (key === this.peerKey) return;
    this.peerKey = key;
    this.peerRoots = next;
    this.peerRev++;
    this.emit({ kind: "bundle" });
  }

  current(identity: number): X509Svid | undefined {
    return this.svids.get(identity);
  }

  /** The identity's SVID, issued now if it has none. */
  ensure(identity: number): Promise<X509Svid> {
    const have = this.svids.get(identity);
    if (have) return Promise.resolve(have);
    let p = this.pending.get(identity);
    if (!p) {
      p = this.issue(identity).finally(() => this.pending.delete(identity));
      this.pending.set(identity, p);
    }
    return p;
  }

  /** Forgets the SVIDs of identities not in `keep` (no endpoint of theirs is left on this node). */
  retain(keep: ReadonlySet<number>): void {
    for (const id of [...this.svids.keys()]) if (!keep.has(id)) this.svids.delete(id);
  }

  /**
   * Replaces the identity's SVID now (a new key, a new certificate); listeners hear of it. The old
   * one stays current until the new one is issued (a handshake or Workload API answer meanwhile
   * gets the old, still valid SVID, not "no SVID").
   */
  rotate(identity: number): Promise<X509Svid> {
    let p = this.pending.get(identity);
    if (!p) {
      p = this.issue(identity).finally(() => this.pending.delete(identity));
      this.pending.set(identity, p);
    }
    return p;
  }

  /** Listens to SVID and bundle changes; returns the unsubscribe function. */
  subscribe(f: (e: SpiffeEvent) => void): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /** Steps the root lifecycle and rotates SVIDs past half life (the timer calls it). */
  tick(): Promise<void> {
    const run = async (): Promise<void> => {
      if (await this.ca.tick()) this.emit({ kind: "bundle" });
      const now = this.now();
      for (const s of [...this.svids.values()]) if (s.rotateAt <= now) await this.rotate(s.identity);
    };
    const r = this.chain.then(run, run);
    this.chain = r.catch(() => undefined);
    return r;
  }

  /** Starts a root rotation now (tests, and an operator's `membrane` command later). */
  async rotateRoot(): Promise<void> {
    await this.ca.rotateRoot();
    this.emit({ kind: "bundle" });
    this.schedule();
  }

  view(): Record<string, unknown> {
    return {
      trustDomain: this.trustDomain,
      svidTtlSeconds: this.ca.svidTtlMs / 1000,
      roots: this.ca.rootsView(),
      svids: [...this.svids.values()].map((s) => s.toJSON()),
    };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async issue(identity: number): Promise<X509Svid> {
    const spiffeId = identitySpiffeId(this.trustDomain, identity);
    const keys = await newKeyPair();
    const { leaf, chain } = await this.ca.sign(spiffeId, keys.publicKey);
    const nb = this.now();
    const na = leaf.notAfter.getTime();
    const svid = new X509Svid(identity, spiffeId, chain, await exportPkcs8(keys.privateKey), leaf.serialNumber, leaf.notBefore, leaf.notAfter, nb + (na - nb) / 2); // prettier-ignore
    this.svids.set(identity, svid);
    this.p.logger.debug({ identity, spiffeId, serial: svid.serial, notAfter: leaf.notAfter.toISOString() }, "SVID issued"); // prettier-ignore
    this.emit({ kind: "svid", identity });
    this.schedule();
    return svid;
  }

  private emit(e: SpiffeEvent): void {
    for (const f of [...this.listeners]) {
      try {
        f(e);
      } catch (err) {
        this.p.logger.warn({ err: (err as Error).message }, "a SPIFFE listener failed");
      }
    }
  }

  private schedule(): void {
    if (this.stopped || this.p.timers === false) return;
    if (this.timer) clearTimeout(this.timer);
    const due = Math.min(this.ca.nextDue(), ...[...this.svids.values()].map((s) => s.rotateAt));
    // After a failure the next try waits RETRY_MS (what was due is still due: no busy loop).
    const ms = Math.max(this.failed ? RETRY_MS : 0, Math.min(due - this.now(), 2 ** 31 - 1));
    this.timer = setTimeout(() => {
      void this.tick()
        .then(() => (this.failed = false))
        .catch((e: unknown) => {
          this.failed = true;
          this.p.logger.error({ err: (e as Error).message }, "SPIFFE rotation failed");
        })
        .finally(() => this.schedule());
    }, ms);
    this.timer.unref();
  }
}
