/**
 * Transparent encryption between nodes with IPsec (`membrane agent --encryption ipsec`, cluster
 * mode): strongSwan's charon driven over VICI, IKEv2 with each node's pinned key, ESP (AES-GCM)
 * in tunnel mode between the nodes' pod CIDRs, in userspace through kernel-libipsec here.
 *
 *   start():  encryption table (strict drop first) ──▶ node key ──▶ charon (adopted or spawned) ──▶ load-key
 *   record(): {type: ipsec, publicKey, port} ──▶ this node's registry entry
 *   attach(view): NodeView ──▶ desiredIpsecPeers ──▶ load-conn / unload-conn (only what changed)
 *                 every pass: list-sas ──▶ initiate what is down (initiator first; the other after a grace)
 *   routes:   peers' pod CIDRs ──dev ipsec0──▶ (cluster/routing.ts)
 *   rotateKey(): announce next key ──▶ wait ──▶ new IKE SAs under it, old ones closed ──▶ publish (rekey-auth.ts)
 *
 *   pod A (n1) ─▶ n1 netns ─route dev ipsec0─▶ charon (ESP) ═UDP port+1═▶ n2 charon ─▶ pod B (n2)
 *               strict: daddr in cluster CIDR, not local, oif != ipsec0 ──▶ log + drop
 *
 * Rekeying is charon's (make-before-break: the new CHILD_SA is installed before the old one is
 * deleted, so no packet waits for keys); the node key (IKE's authentication) rotates on request or
 * by age, make-before-break too (rekey-auth.ts). The private key goes to charon over its VICI
 * socket only; status shows SPIs, algorithms, bytes and ages, never keys.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import { Coalescer } from "../../cluster/coalesce.js";
import type { NodeEncryptionV1 } from "../../cluster/keys.js";
import type { NodeView } from "../../cluster/node-view.js";
import { parsePrefix, type Prefix } from "../../labels/cidr.js";
import { applyEncryptTable } from "../strict.js";
import { inPrefixes, type EncryptionAgent, type EncryptionStatus, type PeerStatus } from "../mode.js";
import { ensureCharon, IPSEC_TUN, type Charon } from "./charon.js";
import { CHILD, connMessage, connName, desiredIpsecPeers, isUp, parseListSas, type IkeSaState, type IpsecPeer } from "./conns.js"; // prettier-ignore
import { discardNextIpsecKey, loadOrCreateIpsecKey, type IpsecNodeKey } from "./node-key.js";
import { ipsecKeyRotation } from "./rekey-auth.js";
import { rotateOnRequest, type KeyRotation, type RotationResult } from "../rotation.js";

export const DEFAULT_IKE_PORT = 51872;

export interface IpsecParams {
  readonly node: string;
  /** This node's underlay address (IKE's local address). */
  readonly nodeIp: string;
  readonly netns?: string;
  readonly stateDir: string;
  readonly port?: number;
  readonly strictCidrs?: readonly string[];
  readonly localCidrs: readonly string[];
  readonly logGroup: number;
  readonly logger: Logger;
  /** CHILD_SA rekey time (default 3600 s). */
  readonly rekeySeconds?: number;
  /** How often SAs are checked and what is down initiated (default 3 s). */
  readonly checkMs?: number;
  /** --encryption-key-rotation: rotate the node key when it is this old (ms); absent = on request only. */
  readonly keyRotationMs?: number;
  /** A rotation's announce wait (ms, rotation.ts; default 5000). */
  readonly rotationAnnounceMs?: number;
}

/** A responder initiates itself when no SA came from the initiator for this long. */
const RESPONDER_GRACE_MS = 10_000;

export class IpsecAgent implements EncryptionAgent {
  readonly mode = "ipsec" as const;
  readonly ifname = IPSEC_TUN;
  readonly port: number;
  /** The key this node publishes. */
  private key: IpsecNodeKey | undefined;
  /** The key its connections sign with: the published one, or during a rotation's switch the next one. */
  private signing: IpsecNodeKey | undefined;
  private rotation: KeyRotation<IpsecNodeKey> | undefined;
  private publishCb: ((e: NodeEncryptionV1) => Promise<void>) | undefined;
  private charon: Charon | undefined;
  private view: NodeView | undefined;
  private stopped = false;
  private timer: NodeJS.Timeout | undefined;
  /** conn name -> the JSON of its loaded message. */
  private readonly loaded = new Map<string, string>();
  /** conn name -> when it was first seen down (responder grace). */
  private readonly downSince = new Map<string, number>();
  private peers: IpsecPeer[] = [];
  private through: Prefix[] = [];
  lastError: string | undefined;
  private readonly log: Logger;
  private readonly passes = new Coalescer(
    () => this.reconcileOnce(),
    () => this.stopped,
  );

  constructor(private readonly p: IpsecParams) {
    this.port = p.port ?? DEFAULT_IKE_PORT;
    this.log = p.logger.child({ part: "ipsec" });
  }

  /** Strict drop first, then the key and charon (the tunnel never exists without the drop). */
  async start(): Promise<void> {
    await applyEncryptTable({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      tunnelIf: this.ifname,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      localCidrs: this.p.localCidrs,
      logGroup: this.p.logGroup,
    });
    const dir = join(this.p.stateDir, "ipsec");
    // A rotation cut short by a crash: the published key stays (node-key.ts discardNextIpsecKey).
    if (discardNextIpsecKey(dir)) this.log.warn("IPsec key rotation was cut short: the node key stays");
    this.key = this.signing = loadOrCreateIpsecKey(dir);
    await this.connect();
    this.rotation = ipsecKeyRotation(
      {
        dir,
        logger: this.log,
        vici: () => this.charon?.vici,
        useKey: (k) => this.useKey(k),
        conns: () => this.peers.map((x) => connName(x.node)),
        publish: async () => {
          if (this.rotation) this.key = this.signing = this.rotation.current;
          await this.publishCb?.(this.record());
        },
        ...(this.p.keyRotationMs !== undefined ? { everyMs: this.p.keyRotationMs } : {}),
        ...(this.p.rotationAnnounceMs !== undefined ? { announceMs: this.p.rotationAnnounceMs } : {}),
      },
      this.key,
    );
  }

  /** Connections sign with `k` from now on (a reconcile pass reloads them); back to the old key if charon refused. */
  private async useKey(k: IpsecNodeKey): Promise<void> {
    const old = this.signing;
    this.signing = k;
    await this.passes.run();
    if (this.lastError === undefined) return;
    const err = this.lastError;
    this.signing = old;
    await this.passes.run();
    throw new Error(`charon did not take the connections under the new key: ${err}`);
  }

  /**
   * charon adopted or (re)started, the node key loaded into it. Also after charon died (a VICI
   * failure in a pass): its TUN went with it, so the strict table dropped pod traffic to peers
   * meanwhile (fail closed); the new charon gets the key and every connection again.
   */
  private async connect(): Promise<void> {
    const key = this.signing;
    if (!key) return;
    this.charon?.vici.close();
    this.loaded.clear();
    this.charon = await ensureCharon({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      node: this.p.node,
      stateDir: this.p.stateDir,
      port: this.port,
    });
    await this.charon.vici.request("load-key", { type: "ecdsa", data: key.privatePem });
    if (this.charon.adopted) {
      const conns = await this.charon.vici.stream("list-conns", {}, "list-conn");
      for (const ev of conns.events) for (const name of Object.keys(ev)) this.loaded.set(name, "(adopted)");
    }
    this.log.info({ adopted: this.charon.adopted, port: this.port, strict: this.p.strictCidrs !== undefined }, this.charon.adopted ? "charon adopted" : "charon started"); // prettier-ignore
  }

  record(): NodeEncryptionV1 {
    if (!this.key) throw new Error("IpsecAgent.record() before start()");
    const next = this.rotation?.next;
    return {
      type: "ipsec",
      publicKey: this.key.publicKey,
      port: this.port,
      keyCreatedAt: this.key.createdAt,
      ...(next ? { nextPublicKey: next.publicKey } : {}),
    };
  }

  /** Rotates this node's key now (rekey-auth.ts); refused before attach (no way to tell the peers). */
  rotateKey(): Promise<RotationResult> {
    return rotateOnRequest(this.rotation, "IPsec");
  }

  async attach(view: NodeView, publish?: (e: NodeEncryptionV1) => Promise<void>): Promise<void> {
    this.view = view;
    this.publishCb = publish;
    if (publish) this.rotation?.start();
    view.onChange(() => void this.passes.run());
    await this.passes.run();
    const tick = (): void => {
      if (this.stopped) return;
      this.timer = setTimeout(() => void this.passes.run().finally(tick), this.p.checkMs ?? 3000);
      this.timer.unref();
    };
    tick();
  }

  trigger(): Promise<void> {
    return this.passes.run();
  }

  private desired(): IpsecPeer[] {
    return this.view ? desiredIpsecPeers(this.view.snapshot, this.p.node) : [];
  }

  private async reconcileOnce(): Promise<void> {
    const c = this.charon;
    const key = this.signing;
    if (!c || !key) return;
    const peers = this.desired();
    try {
      const local = {
        node: this.p.node,
        ip: this.p.nodeIp,
        publicKey: key.publicKey,
        cidrs: this.p.localCidrs,
        rekeySeconds: this.p.rekeySeconds ?? 3600,
        dpdSeconds: 5,
      };
      const want = new Map(peers.map((x) => [connName(x.node), x]));
      // New and changed connections first, then the ones no peer wants (make before break).
      for (const [name, peer] of want) {
        const msg = connMessage(local, peer);
        const text = JSON.stringify(msg);
        if (this.loaded.get(name) === text) continue;
        await c.vici.request("load-conn", msg);
        this.loaded.set(name, text);
        this.downSince.delete(name);
        this.log.info({ peer: peer.node, initiator: peer.initiator }, "IPsec connection loaded");
      }
      for (const name of [...this.loaded.keys()].filter((n) => !want.has(n))) {
        await c.vici.request("unload-conn", { name });
        await c.vici.request("terminate", { ike: name, timeout: "-1" }).catch(() => undefined);
        this.loaded.delete(name);
        this.log.info({ conn: name }, "IPsec connection removed");
      }
      this.peers = peers;
      this.through = peers.flatMap((x) => x.remoteCidrs.map((r) => parsePrefix(r)).filter((r): r is Prefix => r !== undefined)); // prettier-ignore
      const sas = await this.listSas();
      const now = Date.now();
      for (const [name, peer] of want) {
        if (isUp(sas, name)) {
          this.downSince.delete(name);
          continue;
        }
        const since = this.downSince.get(name) ?? now;
        this.downSince.set(name, since);
        if (!peer.initiator && now - since < RESPONDER_GRACE_MS) continue;
        if (sas.some((s) => s.conn === name && s.state === "CONNECTING")) continue;
        // Returns at once; charon retransmits and the next pass looks again.
        await c.vici.request("initiate", { child: CHILD, ike: name, timeout: "-1" }).catch((e: Error) => {
          this.log.debug({ peer: peer.node, err: e.message }, "IPsec initiate");
        });
      }
      this.lastError = undefined;
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.log.error({ err: this.lastError }, "IPsec reconcile failed; retrying");
      for (const k of this.loaded.keys()) this.loaded.set(k, "(unknown)");
      if (
        !this.stopped &&
        (await c.vici.request("version").then(
          () => false,
          () => true,
        ))
      )
        await this.connect().catch((e: unknown) => {
          this.lastError = e instanceof Error ? e.message : String(e);
          this.log.error({ err: this.lastError }, "charon cannot be restarted; retrying");
        });
    }
  }

  private async listSas(): Promise<IkeSaState[]> {
    if (!this.charon) return [];
    return parseListSas((await this.charon.vici.stream("list-sas", {}, "list-sa")).events);
  }

  encrypts(ip: string): boolean {
    return inPrefixes(this.through, ip);
  }

  async status(): Promise<EncryptionStatus> {
    let sas: IkeSaState[] = [];
    let err = this.lastError;
    try {
      sas = await this.listSas();
    } catch (e) {
      err = e instanceof Error ? e.message : String(e);
    }
    const created = this.key?.createdAt ?? new Date(0).toISOString();
    const now = Date.now();
    return {
      mode: "ipsec",
      strict: this.p.strictCidrs !== undefined,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      interface: this.ifname,
      impl: "kernel-libipsec",
      port: this.port,
      publicKey: this.key?.publicKey ?? "",
      keyCreatedAt: created,
      keyAgeSeconds: Math.max(0, Math.round((now - Date.parse(created)) / 1000)),
      nodeToNode: false,
      rotation: this.rotationStatus(),
      peers: this.peers.map((p): PeerStatus => {
        const mine = sas.filter((s) => s.conn === connName(p.node));
        const ike = mine.find((s) => s.state === "ESTABLISHED") ?? mine[0];
        const children = mine.flatMap((s) => s.children);
        return {
          node: p.node,
          mode: "ipsec",
          strict: this.p.strictCidrs !== undefined,
          nodeToNode: false, // IPsec's selectors are the pod CIDRs only
          handshake: ike?.state === "ESTABLISHED" ? "ok" : ike ? "stale" : "never",
          ...(p.keyCreatedAt ? { keyAgeSeconds: Math.max(0, Math.round((now - Date.parse(p.keyCreatedAt)) / 1000)) } : {}), // prettier-ignore
          publicKey: p.publicKey,
          ...(p.nextPublicKey !== undefined ? { nextPublicKey: p.nextPublicKey } : {}),
          endpoint: `${p.ip}:${p.port}`,
          allowedIps: p.remoteCidrs,
          ...(p.keyCreatedAt ? { keyCreatedAt: p.keyCreatedAt } : {}),
          ...(ike?.establishedSeconds !== undefined
            ? { lastHandshake: new Date(now - ike.establishedSeconds * 1000).toISOString() }
            : {}),
          rxBytes: children.reduce((a, x) => a + x.bytesIn, 0),
          txBytes: children.reduce((a, x) => a + x.bytesOut, 0),
          ...(ike ? { ikeState: ike.state } : {}),
          sas: children.map((x) => ({
            state: x.state,
            spiIn: x.spiIn,
            spiOut: x.spiOut,
            encryption: x.encryption,
            bytesIn: x.bytesIn,
            bytesOut: x.bytesOut,
            installedSeconds: x.installedSeconds,
            ...(x.rekeyInSeconds !== undefined ? { rekeyInSeconds: x.rekeyInSeconds } : {}),
          })),
        };
      }),
      ...(err ? { lastError: err } : {}),
    };
  }

  private rotationStatus(): NonNullable<EncryptionStatus["rotation"]> {
    const r = this.rotation;
    const nextAt = r?.nextAt();
    const every = this.p.keyRotationMs;
    return {
      ...(every ? { intervalSeconds: Math.round(every / 1000) } : {}),
      ...(nextAt ? { nextAt } : {}),
      ...(r?.next ? { nextPublicKey: r.next.publicKey } : {}),
      rotations: r?.rotations ?? 0,
      ...(r?.lastError ? { lastError: r.lastError } : {}),
    };
  }

  /** Stops reconciling; charon, its SAs and the strict table stay. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.rotation?.stop();
    await this.passes.running;
    this.charon?.vici.close();
  }
}
