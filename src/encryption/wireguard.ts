/**
 * Transparent encryption between nodes with WireGuard (`membrane agent
 * --encryption wireguard`, cluster mode).
 *
 *   start():  encryption table (strict drop first) ──▶ key pair (state dir) ──▶ wg interface up
 *   record(): {type, publicKey, port} ──▶ this node's registry entry (peers read it)
 *   attach(view): NodeView changes ──▶ desiredPeers ──▶ `wg syncconf` (coalesced, retried)
 *   routes:   peers' pod CIDRs ──dev <wg>──▶ (cluster/routing.ts, peer-routes.ts)
 *
 *   pod A (n1) ─▶ n1 netns ─route dev mwg..─▶ wireguard ═UDP═▶ n2 netns ─▶ wireguard ─▶ pod B (n2)
 *                     strict: daddr in cluster CIDR, not local, oif != wg ──▶ log + drop
 *
 * Nothing here logs or serves the private key: it lives in a 0600 file that only
 * `wg set ... private-key FILE` reads.
 */
import { join } from "node:path";
import type { Logger } from "pino";
import { Coalescer } from "../cluster/coalesce.js";
import type { NodeView } from "../cluster/node-view.js";
import type { NodeEncryptionV1 } from "../cluster/keys.js";
import { ensureWgDevice, runWg, wgInterfaceName, type WgImpl } from "./device.js";
import { loadOrCreateNodeKey, type NodeKey } from "./keys.js";
import { desiredPeers, parseWgDump, planPeers, type WgPeer, type WgPeerState } from "./peers.js";
import { applyEncryptTable } from "./strict.js";
import { containsPrefix, parseAddr, parsePrefix, type Prefix } from "../labels/cidr.js";

export const DEFAULT_WG_PORT = 51871;

export interface WireGuardParams {
  readonly node: string;
  readonly netns?: string;
  readonly stateDir: string;
  readonly port?: number;
  /** Strict mode: CIDRs traffic to must leave encrypted; absent = off. */
  readonly strictCidrs?: readonly string[];
  readonly localCidrs: readonly string[];
  readonly logGroup: number;
  readonly logger: Logger;
  /** Underlay family of the peers' endpoints (default 4). */
  readonly family?: 4 | 6;
  readonly preferKernel?: boolean;
  readonly retryMs?: number;
}

export interface PeerStatus {
  readonly node: string;
  readonly publicKey: string;
  readonly endpoint: string;
  readonly allowedIps: readonly string[];
  /** ISO time of the peer's key (from its registry entry). */
  readonly keyCreatedAt?: string;
  /** ISO time of the latest handshake; absent = none yet. */
  readonly lastHandshake?: string;
  readonly rxBytes: number;
  readonly txBytes: number;
}

export interface EncryptionStatus {
  readonly mode: "wireguard";
  readonly strict: boolean;
  readonly strictCidrs?: readonly string[];
  readonly interface: string;
  readonly impl: WgImpl | "starting";
  readonly port: number;
  readonly publicKey: string;
  readonly keyCreatedAt: string;
  readonly keyAgeSeconds: number;
  readonly peers: readonly PeerStatus[];
  readonly lastError?: string;
}

export class WireGuardAgent {
  readonly ifname: string;
  readonly port: number;
  private key: NodeKey | undefined;
  private impl: WgImpl | "starting" = "starting";
  private view: NodeView | undefined;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private applied: string | undefined;
  private peers: WgPeer[] = [];
  /** The applied peers' allowed IPs, parsed (encrypts()). */
  private through: Prefix[] = [];
  lastError: string | undefined;
  private readonly log: Logger;
  private readonly passes = new Coalescer(
    () => this.reconcileOnce(),
    () => this.stopped,
  );

  constructor(private readonly p: WireGuardParams) {
    this.ifname = wgInterfaceName(p.netns, p.node);
    this.port = p.port ?? DEFAULT_WG_PORT;
    this.log = p.logger.child({ part: "wireguard", interface: this.ifname });
  }

  /** Strict drop first, then the key and the interface (the tunnel never exists without the drop). */
  async start(): Promise<void> {
    await applyEncryptTable({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      wgIf: this.ifname,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      localCidrs: this.p.localCidrs,
      logGroup: this.p.logGroup,
    });
    const dir = join(this.p.stateDir, "wireguard");
    this.key = loadOrCreateNodeKey(dir);
    const dev = await ensureWgDevice({
      ...(this.p.netns ? { netns: this.p.netns } : {}),
      ifname: this.ifname,
      port: this.port,
      privateKeyFile: this.key.privateKeyFile,
      publicKey: this.key.publicKey,
      logFile: join(dir, "wireguard-go.log"),
      ...(this.p.preferKernel !== undefined ? { preferKernel: this.p.preferKernel } : {}),
    });
    this.impl = dev.impl;
    this.log.info(
      { impl: dev.impl, adopted: dev.adopted, port: this.port, strict: this.p.strictCidrs !== undefined },
      dev.adopted ? "WireGuard interface adopted" : "WireGuard interface created",
    );
  }

  /** What this node publishes in its registry entry. */
  record(): NodeEncryptionV1 {
    if (!this.key) throw new Error("WireGuardAgent.record() before start()");
    return {
      type: "wireguard",
      publicKey: this.key.publicKey,
      port: this.port,
      keyCreatedAt: this.key.createdAt,
    };
  }

  /** Reconciles the peers from `view` now and on every change. */
  async attach(view: NodeView): Promise<void> {
    this.view = view;
    view.onChange(() => {
      if (this.applied !== JSON.stringify(this.desired())) void this.passes.run();
    });
    await this.passes.run();
  }

  private desired(): WgPeer[] {
    return this.view ? desiredPeers(this.view.snapshot, this.p.node, this.p.family ?? 4) : [];
  }

  /** Reconciles now; resolves when done. */
  trigger(): Promise<void> {
    return this.passes.run();
  }

  private async reconcileOnce(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    const peers = this.desired();
    try {
      const live = parseWgDump(
        await runWg(this.p.netns, ["show", this.ifname, "dump"], "read the WireGuard peers"),
      );
      const args = planPeers(peers, live);
      if (args.length > 0)
        await runWg(this.p.netns, ["set", this.ifname, ...args], `set the WireGuard peers of ${this.ifname}`);
      const key = JSON.stringify(peers);
      if (this.applied !== key)
        this.log.info({ peers: peers.map((x) => x.node) }, "WireGuard peers reconciled");
      this.applied = key;
      this.peers = peers;
      this.through = peers.flatMap((x) =>
        x.allowedIps.map((c) => parsePrefix(c)).filter((c): c is Prefix => c !== undefined),
      );
      this.lastError = undefined;
    } catch (e) {
      this.applied = undefined;
      this.lastError = e instanceof Error ? e.message : String(e);
      this.log.error({ err: this.lastError }, "WireGuard peers failed; retrying");
      if (!this.stopped) (this.retry = setTimeout(() => void this.trigger(), this.p.retryMs ?? 2000)).unref();
    }
  }

  /** Whether traffic with `ip` goes through the tunnel (a peer's allowed IPs hold it): flows' IP.encrypted. */
  encrypts(ip: string, _tcp?: boolean): boolean {
    const a = parseAddr(ip);
    if (!a) return false;
    const host: Prefix = { family: a.family, addr: a.value, bits: a.family === 4 ? 32 : 128 };
    return this.through.some((p) => containsPrefix(p, host));
  }

  /** Mode, key age and each peer's handshake (read from the interface). */
  async status(): Promise<EncryptionStatus> {
    let live: WgPeerState[] = [];
    let err = this.lastError;
    try {
      live = parseWgDump(
        await runWg(this.p.netns, ["show", this.ifname, "dump"], "read the WireGuard peers"),
      );
    } catch (e) {
      err = e instanceof Error ? e.message : String(e);
    }
    const recs = this.view?.snapshot.records;
    const key = this.key;
    const created = key?.createdAt ?? new Date(0).toISOString();
    return {
      mode: "wireguard",
      strict: this.p.strictCidrs !== undefined,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      interface: this.ifname,
      impl: this.impl,
      port: this.port,
      publicKey: key?.publicKey ?? "",
      keyCreatedAt: created,
      keyAgeSeconds: Math.max(0, Math.round((Date.now() - Date.parse(created)) / 1000)),
      peers: this.peers.map((p): PeerStatus => {
        const l = live.find((x) => x.publicKey === p.publicKey);
        const kc = recs?.get(p.node)?.record.encryption?.keyCreatedAt;
        return {
          node: p.node,
          publicKey: p.publicKey,
          endpoint: p.endpoint,
          allowedIps: l?.allowedIps ?? [],
          ...(kc ? { keyCreatedAt: kc } : {}),
          ...(l && l.latestHandshake > 0
            ? { lastHandshake: new Date(l.latestHandshake * 1000).toISOString() }
            : {}),
          rxBytes: l?.rxBytes ?? 0,
          txBytes: l?.txBytes ?? 0,
        };
      }),
      ...(err ? { lastError: err } : {}),
    };
  }

  /** Stops reconciling; the interface, its peers and the strict table stay (the kernel keeps encrypting). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.passes.running;
  }
}
