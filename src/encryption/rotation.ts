/**
 * Node key rotation without resetting connections (`membrane encryption rotate-key`,
 * `--encryption-key-rotation 24h`): the four steps below, for WireGuard's interface key here and,
 * with their own key files and switch, for IPsec's IKE key (ipsec/rekey-auth.ts).
 *
 * WireGuard has one static key per interface, and on a receiving node each allowed IP belongs
 * to exactly one peer (one public key). So the old and the new key of a node cannot both be
 * "the" peer for its pods at once. What can overlap is the handshake: a node may hold a second
 * peer entry under the rotating node's next key with no allowed IPs. The scheme, for node A
 * rotating from key a1 to a2 while B peers with it:
 *
 *   1. announce  A writes next.key (0600) and publishes `encryption.nextPublicKey: a2` (its
 *                publicKey is still a1). B adds peer a2 (endpoint A, no allowed IPs) beside a1.
 *                Nothing changes for traffic: A's pods are still B's peer a1.
 *   2. wait      announceMs (default 5 s) for every peer to learn a2 through the store.
 *   3. switch    A sets a2 as its interface key. WireGuard (kernel and wireguard-go alike) then
 *                stops *sending* on the sessions made under a1 but keeps *receiving* on them, and
 *                its next packet to B starts a handshake as a2: B's peer a2 answers it at once
 *                (step 1), so A->B never waits for WireGuard's 5 s handshake retry. B->A packets
 *                still use B's session with peer a1, which A still decrypts.
 *   4. publish   A renames next.key over private.key and publishes `publicKey: a2` (no next).
 *                B, in one `wg set`, removes peer a1 and gives peer a2 A's allowed IPs; its
 *                replies now go through the a2 session made in step 3.
 *
 * The one gap: A->B data sent on the new session between steps 3 and 4 reaches B's peer a2
 * before it owns A's addresses, and B's cryptokey check drops it (a store round trip, ~0.1-1 s).
 * Those packets are lost, never sent in clear (strict mode and the routes do not depend on keys);
 * TCP retransmits them and no connection is reset. A peer that missed step 1 recovers at step 4
 * (its own next packet to A handshakes under a2).
 *
 * Crash safety: next.key is renamed over private.key only after the switch; a start after a cut
 * rotation keeps whichever key the interface holds (keys.ts settlePendingKey).
 */
import type { Logger } from "pino";
import { MembraneError } from "../errors.js";
import type { NodeKey } from "./keys.js";
import { commitNextKey, discardNextKey, prepareNextKey } from "./keys.js";

/** What a rotation needs of a key: its public half and when it was made. */
export interface RotatingKey {
  readonly publicKey: string;
  readonly createdAt: string;
}

/** The key files of a mode: step 1 makes the next key, step 4 commits it, a failed rotation discards it. */
export interface KeyFiles<K extends RotatingKey> {
  prepare(): K;
  commit(next: K): K;
  discard(): void;
}

/** WireGuard's key files in `dir` (keys.ts). */
export const wireguardKeyFiles = (dir: string): KeyFiles<NodeKey> => ({
  prepare: () => prepareNextKey(dir),
  commit: (next) => commitNextKey(dir, next),
  discard: () => discardNextKey(dir),
});

export interface KeyRotationParams<K extends RotatingKey = NodeKey> {
  /** WireGuard's key directory (<state-dir>/wireguard), when `keys` is not given. */
  readonly dir?: string;
  /** The mode's key files (default: WireGuard's in `dir`). */
  readonly keys?: KeyFiles<K>;
  /** The mode's name in logs (default WireGuard). */
  readonly label?: string;
  readonly logger: Logger;
  /** Puts `key` in use (WireGuard: `wg set <if> private-key FILE`; IPsec: charon signs with it, SAs made again). */
  readonly switchTo: (key: K) => Promise<void>;
  /** Publishes this node's record again (record() reads current and next). */
  readonly publish: () => Promise<void>;
  /** Rotate when the key is this old (ms); absent or 0 = only on request. */
  readonly everyMs?: number;
  /** Step 2's wait (ms, default 5000). */
  readonly announceMs?: number;
}

export interface RotationResult {
  readonly previousPublicKey: string;
  readonly publicKey: string;
  readonly keyCreatedAt: string;
}

/** setTimeout's limit (~24.8 days): longer waits are re-armed. */
const MAX_TIMER = 2 ** 31 - 1;

export class KeyRotation<K extends RotatingKey = NodeKey> {
  private running: Promise<RotationResult> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private started = false;
  /** Ends step 2's wait early (stop()). */
  private wake: (() => void) | undefined;
  /** The announced key while a rotation is between steps 1 and 4. */
  next: K | undefined;
  /** Rotations done since start, and the last one's error. */
  rotations = 0;
  lastError: string | undefined;

  private readonly keys: KeyFiles<K>;
  private readonly label: string;

  constructor(
    private readonly p: KeyRotationParams<K>,
    /** The key in use (changes at step 4). */
    public current: K,
  ) {
    if (p.keys) this.keys = p.keys;
    else if (p.dir !== undefined) this.keys = wireguardKeyFiles(p.dir) as unknown as KeyFiles<K>;
    else throw new Error("KeyRotation needs dir or keys");
    this.label = p.label ?? "WireGuard";
  }

  /** When the periodic rotation is due next (ISO), absent when it is off. */
  nextAt(): string | undefined {
    if (!this.p.everyMs) return undefined;
    return new Date(Date.parse(this.current.createdAt) + this.p.everyMs).toISOString();
  }

  /** Arms the periodic rotation (key age survives restarts: it counts from the key's createdAt). */
  start(): void {
    this.started = true;
    this.arm();
  }

  /** start() was called: the agent attached and can publish, so the peers can be told of a new key. */
  get armed(): boolean {
    return this.started;
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const at = this.nextAt();
    if (at === undefined || this.stopped) return;
    const wait = Math.max(0, Math.min(MAX_TIMER, Date.parse(at) - Date.now()));
    this.timer = setTimeout(() => {
      if (Date.now() < Date.parse(at)) return this.arm();
      void this.rotate().catch(() => undefined);
    }, wait);
    this.timer.unref();
  }

  /** Rotates now (a rotation already running is joined, not doubled). */
  rotate(): Promise<RotationResult> {
    this.running ??= this.steps().finally(() => {
      this.running = undefined;
      this.arm();
    });
    return this.running;
  }

  private async steps(): Promise<RotationResult> {
    const before = this.current;
    const log = this.p.logger;
    let switched = false;
    try {
      // 1. announce
      this.next = this.keys.prepare();
      await this.p.publish();
      log.info({ next: this.next.publicKey }, `${this.label} key rotation: next key announced`);
      // 2. wait for the peers to learn it
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.p.announceMs ?? 5000);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.stopped) throw new Error("the agent is stopping");
      // 3. switch
      await this.p.switchTo(this.next);
      switched = true;
      // 4. publish (the interface holds the new key now: so does the record, even if the rename
      // failed; the next start commits next.key then, settlePendingKey)
      const next = this.next;
      this.next = undefined;
      try {
        this.current = this.keys.commit(next);
      } catch (e) {
        this.current = next;
        log.error({ err: (e as Error).message }, `cannot rename the next ${this.label} key over the old one`);
      }
      await this.p.publish();
      this.rotations++;
      this.lastError = undefined;
      log.info({ publicKey: this.current.publicKey }, `${this.label} key rotated`);
      return {
        previousPublicKey: before.publicKey,
        publicKey: this.current.publicKey,
        keyCreatedAt: this.current.createdAt,
      };
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      log.error({ err: this.lastError, switched }, `${this.label} key rotation failed`);
      if (!switched && this.next) {
        // Not switched: the old key stays; withdraw the announcement.
        this.keys.discard();
        this.next = undefined;
        await this.p.publish().catch(() => undefined);
      }
      throw e;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    await this.running?.catch(() => undefined);
  }
}

/**
 * A rotation asked for now (`membrane encryption rotate-key`), the same for WireGuard and IPsec:
 * refused until the rotation was started at attach, since before that the peers cannot be told of
 * the new key (and `rotation` is undefined before the agent's start).
 */
export function rotateOnRequest<K extends RotatingKey>(
  rotation: KeyRotation<K> | undefined,
  label: string,
): Promise<RotationResult> {
  if (!rotation?.armed)
    return Promise.reject(
      new MembraneError("ENCRYPTION_FAILED", `Cannot rotate the ${label} key: the agent is still starting`, {
        hint: "wait for `membrane status` to answer, then run it again",
      }),
    );
  return rotation.rotate();
}
