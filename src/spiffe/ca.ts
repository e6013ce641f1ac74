/**
 * The trust domain's CA: its roots and their rotation, and the signing of X.509-SVIDs.
 *
 *   roots:  prepared --(activateAt)--> active --(next root active)--> retiring --(dropAt)--> gone
 *             in the bundle             signs SVIDs                  in the bundle
 *
 * Root rotation with an overlap (make before break): a new root enters the bundle `overlapMs`
 * before it signs anything, so every holder of the bundle trusts it before the first SVID it
 * signs appears; the old root stays in the bundle until the last SVID it signed has expired
 * (`svidTtlMs` after the new root took over). A root is prepared at half its life. The root keys
 * are kept by CaFile (ca-file.ts) and only in this process's memory otherwise; nothing here logs
 * or returns a private key of a root. The clock is a parameter (tests move it).
 */
import * as x509 from "./x509.js";
import { MembraneError } from "../errors.js";
import {
  createLeaf,
  createRoot,
  exportPkcs8,
  exportSpki,
  importPkcs8,
  newKeyPair,
  type Key,
} from "./certs.js";
import type { CaFile, RootState, StoredRoot } from "./ca-file.js";

export interface CaParams {
  readonly trustDomain: string;
  /** Where the root keys are kept; absent = memory only (tests). */
  readonly file?: CaFile;
  /** Life of an X.509-SVID (default 1 h). */
  readonly svidTtlMs?: number;
  /** Life of a root (default 30 days); a new one is prepared at half of it. */
  readonly rootTtlMs?: number;
  /** How long a new root is in the bundle before it signs (default: svidTtlMs). */
  readonly overlapMs?: number;
  readonly now?: () => number;
}

interface Root {
  state: RootState;
  readonly cert: x509.X509Certificate;
  readonly der: Buffer;
  readonly key: Key;
  activateAt?: number;
  dropAt?: number;
}

export const DEFAULT_SVID_TTL_MS = 3_600_000;
export const DEFAULT_ROOT_TTL_MS = 30 * 24 * 3_600_000;
/** Certificates start a little in the past: clocks of two nodes differ. */
const BACKDATE_MS = 30_000;

export class SpiffeCa {
  readonly trustDomain: string;
  readonly svidTtlMs: number;
  readonly rootTtlMs: number;
  readonly overlapMs: number;
  private readonly now: () => number;
  private roots: Root[] = [];
  private rev = 0;

  private constructor(private readonly p: CaParams) {
    this.trustDomain = p.trustDomain;
    this.svidTtlMs = p.svidTtlMs ?? DEFAULT_SVID_TTL_MS;
    this.rootTtlMs = p.rootTtlMs ?? DEFAULT_ROOT_TTL_MS;
    this.overlapMs = p.overlapMs ?? this.svidTtlMs;
    this.now = p.now ?? Date.now;
    if (this.rootTtlMs < 2 * (this.overlapMs + this.svidTtlMs) + 2 * BACKDATE_MS) {
      throw new MembraneError(
        "CONFIG_INVALID",
        `Cannot run the SPIFFE CA: a root's life (${this.rootTtlMs} ms) must be at least twice the overlap plus an SVID's life (${this.overlapMs} + ${this.svidTtlMs} ms)`,
      );
    }
  }

  /** Loads the roots from the file (or makes the first one) and brings their states up to date. */
  static async open(p: CaParams): Promise<SpiffeCa> {
    const ca = new SpiffeCa(p);
    const stored = await p.file?.load();
    if (stored) {
      if (stored.trustDomain !== p.trustDomain) {
        throw new MembraneError(
          "SPIFFE_CA_FAILED",
          `Cannot use the SPIFFE CA file ${p.file?.path}: it is for trust domain ${stored.trustDomain}, not ${p.trustDomain}`,
          {
            hint: "Start with the trust domain it was made for, or move the file away to start a new trust domain",
          },
        );
      }
      for (const r of stored.roots) ca.roots.push(await ca.readRoot(r));
    }
    await ca.tick();
    return ca;
  }

  /** Changes whenever the bundle changes. */
  get bundleRevision(): number {
    return this.rev;
  }

  /** The trust bundle: every root in it (prepared, active, retiring), DER. */
  bundle(): Buffer[] {
    return this.roots.map((r) => r.der);
  }

  /** The roots as `membrane get status` may show them (no key). */
  rootsView(): {
    state: RootState;
    serial: string;
    notAfter: string;
    activateAt?: string;
    dropAt?: string;
  }[] {
    return this.roots.map((r) => ({
      state: r.state,
      serial: r.cert.serialNumber,
      notAfter: r.cert.notAfter.toISOString(),
      ...(r.activateAt !== undefined ? { activateAt: new Date(r.activateAt).toISOString() } : {}),
      ...(r.dropAt !== undefined ? { dropAt: new Date(r.dropAt).toISOString() } : {}),
    }));
  }

  /** When tick() has something to do next (ms since epoch). */
  nextDue(): number {
    const active = this.roots.find((r) => r.state === "active");
    const times = this.roots
      .flatMap((r) => [r.activateAt, r.dropAt])
      .filter((t): t is number => t !== undefined);
    if (active && !this.roots.some((r) => r.state === "prepared")) times.push(this.prepareAt(active));
    return Math.min(...times, this.now() + this.rootTtlMs);
  }

  /**
   * Steps the roots' lifecycle to now: first root, prepared root at half life, activation,
   * retirement. Persists before the change is used. Returns true if the bundle changed.
   */
  async tick(): Promise<boolean> {
    const now = this.now();
    const before = this.rev;
    let changed = false;
    const active = this.roots.find((r) => r.state === "active");
    if (!active || active.cert.notAfter.getTime() <= now) {
      // No usable root (first start, or the node was off past a root's life): a new one signs now.
      for (const r of this.roots)
        if (r.state === "active") Object.assign(r, { state: "retiring", dropAt: now });
      this.roots.push(await this.newRoot("active", now));
      changed = true;
    } else if (now >= this.prepareAt(active) && !this.roots.some((r) => r.state === "prepared")) {
      this.roots.push(await this.newRoot("prepared", now, now + this.overlapMs));
      changed = true;
    }
    const due = this.roots.find((r) => r.state === "prepared" && (r.activateAt ?? 0) <= now);
    if (due) {
      for (const r of this.roots) {
        if (r.state === "active" && r !== due)
          Object.assign(r, { state: "retiring", dropAt: now + this.svidTtlMs });
      }
      Object.assign(due, { state: "active", activateAt: undefined });
      changed = true;
    }
    const kept = this.roots.filter((r) => r.state !== "retiring" || (r.dropAt ?? 0) > now);
    if (kept.length !== this.roots.length) changed = true;
    this.roots = kept;
    if (changed) {
      await this.persist();
      this.rev = before + 1;
    }
    return changed;
  }

  /** Starts a root rotation now (the new root is prepared; it signs after the overlap). */
  async rotateRoot(): Promise<void> {
    if (this.roots.some((r) => r.state === "prepared")) return;
    const now = this.now();
    this.roots.push(await this.newRoot("prepared", now, now + this.overlapMs));
    await this.persist();
    this.rev++;
  }

  /**
   * Signs an X.509-SVID for `spiffeId` over `publicKey`, by the active root; its life ends no
   * later than the root's. Returns the chain (leaf first; the root is in the bundle, not here).
   */
  async sign(spiffeId: string, publicKey: Key): Promise<{ leaf: x509.X509Certificate; chain: Buffer[] }> {
    const active = this.roots.find((r) => r.state === "active");
    if (!active)
      throw new MembraneError("SPIFFE_CA_FAILED", "Cannot sign an SVID: the CA has no active root");
    const now = this.now();
    const notAfter = Math.min(now + this.svidTtlMs, active.cert.notAfter.getTime());
    const leaf = await createLeaf({
      spiffeId,
      publicKey,
      issuer: active.cert,
      issuerKey: active.key,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
    });
    return { leaf, chain: [Buffer.from(leaf.rawData)] };
  }

  private prepareAt(active: Root): number {
    const nb = active.cert.notBefore.getTime() + BACKDATE_MS;
    return nb + (active.cert.notAfter.getTime() - nb) / 2;
  }

  private async newRoot(state: RootState, now: number, activateAt?: number): Promise<Root> {
    const keys = await newKeyPair();
    const cert = await createRoot({
      trustDomain: this.trustDomain,
      keys,
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(now + this.rootTtlMs),
    });
    return { state, cert, der: Buffer.from(cert.rawData), key: keys.privateKey, ...(activateAt !== undefined ? { activateAt } : {}) }; // prettier-ignore
  }

  private async readRoot(r: StoredRoot): Promise<Root> {
    try {
      const der = Buffer.from(r.cert, "base64");
      const cert = new x509.X509Certificate(der);
      const keys = await importPkcs8(Buffer.from(r.key, "base64"));
      const mine = Buffer.from(await exportSpki(keys.publicKey)).equals(Buffer.from(cert.publicKey.rawData));
      if (!mine) throw new Error("the key is not the certificate's");
      return { state: r.state, cert, der, key: keys.privateKey, ...(r.activateAt !== undefined ? { activateAt: r.activateAt } : {}), ...(r.dropAt !== undefined ? { dropAt: r.dropAt } : {}) }; // prettier-ignore
    } catch (e) {
      // The message only: a parser's message never quotes key bytes, but a cause object might.
      const why = e instanceof Error ? e.message.slice(0, 200) : "unreadable";
      throw new MembraneError("SPIFFE_CA_FAILED", `Cannot read a root of the SPIFFE CA file ${this.p.file?.path}: ${why}`); // prettier-ignore
    }
  }

  private async persist(): Promise<void> {
    if (!this.p.file) return;
    const roots: StoredRoot[] = [];
    for (const r of this.roots) {
      roots.push({
        state: r.state,
        cert: r.der.toString("base64"),
        key: (await exportPkcs8(r.key)).toString("base64"),
        ...(r.activateAt !== undefined ? { activateAt: r.activateAt } : {}),
        ...(r.dropAt !== undefined ? { dropAt: r.dropAt } : {}),
      });
    }
    await this.p.file.save({ version: 1, trustDomain: this.trustDomain, roots });
  }
}
