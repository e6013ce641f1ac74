/**
 * Transparent encryption between nodes with WireGuard (`membrane agent
 * --encryption wireguard`, cluster mode).
 *
 *   start():  encryption table (strict drop first) ──▶ key pair (state dir) ──▶ wg interface up
 *   record(): {type, publicKey, port, nextPublicKey?, nodeToNode?} ──▶ this node's registry entry
 *   attach(view): NodeView changes ──▶ desiredPeers ──▶ `wg set` differences (coalesced, retried)
 *   routes:   peers' pod CIDRs ──dev <wg>──▶ (cluster/routing.ts, peer-routes.ts)
 *             node-to-node: peers' node addresses ──table 2110 dev <wg>──▶ (node-routes.ts)
 *   rotateKey(): announce next key ──▶ wait ──▶ switch ──▶ publish (rotation.ts: why no reset)
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
import { loadOrCreateNodeKey, settlePendingKey, type NodeKey } from "./keys.js";
import { desiredPeers, parseWgDump, planPeers, type WgPeer, type WgPeerState } from "./peers.js";
import { applyEncryptTable } from "./strict.js";
import { parseAddr, parsePrefix, type Prefix } from "../labels/cidr.js";
import { inPrefixes, type EncryptionAgent } from "./mode.js";
import { KeyRotation, rotateOnRequest, type RotationResult } from "./rotation.js";
import {
  ensureNodeRouting,
  NODE_ROUTE_TABLE,
  reconcileNodeRoutes,
  removeNodeRouting,
} from "./node-routes.js";
import { buildStatus, type EncryptionStatus } from "./status.js";
import { runRaw } from "../datapath/exec.js";

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
  /** --encryption-node-to-node: this node's own traffic to peers goes through the tunnel too. */
  readonly nodeToNode?: { readonly selfIp: string };
  /** --encryption-key-rotation: rotate when the key is this old (ms); absent = on request only. */
  readonly keyRotationMs?: number;
  /** A rotation's announce wait (ms, rotation.ts; default 5000). */
  readonly rotationAnnounceMs?: number;
}

export type { EncryptionStatus, PeerStatus, RotationStatus } from "./status.js";

export class WireGuardAgent implements EncryptionAgent {
  readonly mode = "wireguard" as const;
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
  /** Node-to-node: the peers' node addresses the strict table holds now. */
  private strictNodes: string[] = [];
  private rotation: KeyRotation | undefined;
  /** Publishes this node's record again (attach()); key rotations need it. */
  private publishCb: ((e: NodeEncryptionV1) => Promise<void>) | undefined;
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

  private where(): { netns?: string } {
    return this.p.netns ? { netns: this.p.netns } : {};
  }

  /** The strict table with `nodeIps` (node-to-node) as the addresses only the tunnel may reach. */
  private async applyTable(nodeIps: readonly string[]): Promise<void> {
    await applyEncryptTable({
      ...this.where(),
      tunnelIf: this.ifname,
      ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
      localCidrs: this.p.localCidrs,
      logGroup: this.p.logGroup,
      ...(this.p.nodeToNode ? { nodeIps: nodeIps.map((ip) => hostPrefix(ip)), port: this.port } : {}),
    });
    this.strictNodes = [...nodeIps];
  }

  /** Strict drop first, then the key and the interface (the tunnel never exists without the drop). */
  async start(): Promise<void> {
    // A restart keeps strict for the node addresses the last run routed through the tunnel.
    if (this.p.nodeToNode) this.strictNodes = await this.routedNodes();
    await this.applyTable(this.strictNodes);
    const dir = join(this.p.stateDir, "wireguard");
    // A rotation cut short by a crash: keep the key the interface holds (keys.ts).
    const live = await runRaw(["wg", "show", this.ifname, "public-key"], this.where());
    if (settlePendingKey(dir, live.status === 0 ? live.stdout.trim() : undefined))
      this.log.warn("WireGuard key rotation was cut short after its switch: the new key is kept");
    this.key = loadOrCreateNodeKey(dir);
    const dev = await ensureWgDevice({
      ...this.where(),
      ifname: this.ifname,
      port: this.port,
      privateKeyFile: this.key.privateKeyFile,
      publicKey: this.key.publicKey,
      logFile: join(dir, "wireguard-go.log"),
      ...(this.p.preferKernel !== undefined ? { preferKernel: this.p.preferKernel } : {}),
    });
    this.impl = dev.impl;
    if (this.p.nodeToNode)
      await ensureNodeRouting({ ...this.where(), ifname: this.ifname, selfIp: this.p.nodeToNode.selfIp });
    else if (await removeNodeRouting(this.p.netns))
      this.log.info("node-to-node routing of an earlier run removed");
    this.rotation = new KeyRotation(
      {
        dir,
        logger: this.log,
        switchTo: async (k) => {
          await runWg(
            this.p.netns,
            ["set", this.ifname, "private-key", k.privateKeyFile],
            `switch ${this.ifname} to its next key`,
          );
        },
        publish: async () => {
          if (this.rotation) this.key = this.rotation.current;
          await this.publishCb?.(this.record());
        },
        ...(this.p.keyRotationMs !== undefined ? { everyMs: this.p.keyRotationMs } : {}),
        ...(this.p.rotationAnnounceMs !== undefined ? { announceMs: this.p.rotationAnnounceMs } : {}),
      },
      this.key,
    );
    this.log.info(
      {
        impl: dev.impl,
        adopted: dev.adopted,
        port: this.port,
        strict: this.p.strictCidrs !== undefined,
        nodeToNode: this.p.nodeToNode !== undefined,
      },
      dev.adopted ? "WireGuard interface adopted" : "WireGuard interface created",
    );
  }

  private async routedNodes(): Promise<string[]> {
    const r = await runRaw(["ip", "-j", "route", "show", "table", String(NODE_ROUTE_TABLE)], this.where());
    if (r.status !== 0 || r.stdout.trim() === "") return [];
    return (JSON.parse(r.stdout) as { dst?: string }[]).map((x) => x.dst ?? "").filter((d) => parseAddr(d));
  }

  /** What this node publishes in its registry entry. */
  record(): NodeEncryptionV1 {
    if (!this.key) throw new Error("WireGuardAgent.record() before start()");
    const next = this.rotation?.next;
    return {
      type: "wireguard",
      publicKey: this.key.publicKey,
      port: this.port,
      keyCreatedAt: this.key.createdAt,
      ...(next ? { nextPublicKey: next.publicKey } : {}),
      ...(this.p.nodeToNode ? { nodeToNode: true } : {}),
    };
  }

  /**
   * Reconciles the peers from `view` now and on every change; `publish` puts this node's
   * record (with record()'s encryption) again, for key rotations. Arms the periodic rotation.
   */
  async attach(view: NodeView, publish?: (e: NodeEncryptionV1) => Promise<void>): Promise<void> {
    this.view = view;
    this.publishCb = publish;
    view.onChange(() => {
      if (this.applied !== JSON.stringify(this.desired())) void this.passes.run();
    });
    await this.passes.run();
    if (publish) this.rotation?.start();
  }

  /** Rotates this node's key now (rotation.ts); refused before attach (no way to tell the peers). */
  rotateKey(): Promise<RotationResult> {
    return rotateOnRequest(this.rotation, "WireGuard");
  }

  private desired(): WgPeer[] {
    return this.view
      ? desiredPeers(this.view.snapshot, this.p.node, {
          family: this.p.family ?? 4,
          nodeToNode: this.p.nodeToNode !== undefined,
        })
      : [];
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
      const nodeIps = peers.flatMap((x) => (x.nodeAddress !== undefined ? [x.nodeAddress] : [])).sort();
      const n2n = this.p.nodeToNode;
      // Node-to-node, fail closed: a new peer's address is strict before it is routed; a gone
      // peer's stays strict until its route is gone.
      if (n2n && nodeIps.some((ip) => !this.strictNodes.includes(ip)))
        await this.applyTable([...new Set([...this.strictNodes, ...nodeIps])]);
      const live = parseWgDump(
        await runWg(this.p.netns, ["show", this.ifname, "dump"], "read the WireGuard peers"),
      );
      const args = planPeers(peers, live);
      if (args.length > 0)
        await runWg(this.p.netns, ["set", this.ifname, ...args], `set the WireGuard peers of ${this.ifname}`);
      if (n2n) {
        await reconcileNodeRoutes({ ...this.where(), ifname: this.ifname, selfIp: n2n.selfIp }, nodeIps);
        if (this.strictNodes.join() !== nodeIps.join()) await this.applyTable(nodeIps);
      }
      const key = JSON.stringify(peers);
      if (this.applied !== key)
        this.log.info(
          { peers: peers.map((x) => (x.next ? `${x.node} (next key)` : x.node)) },
          "WireGuard peers reconciled",
        );
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
  encrypts(ip: string): boolean {
    return inPrefixes(this.through, ip);
  }

  /** Mode, key age and rotation, and each peer's handshake (read from the interface). */
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
    const r = this.rotation;
    const nextAt = r?.nextAt();
    const every = this.p.keyRotationMs;
    return buildStatus(
      {
        mode: "wireguard",
        strict: this.p.strictCidrs !== undefined,
        ...(this.p.strictCidrs ? { strictCidrs: this.p.strictCidrs } : {}),
        nodeToNode: this.p.nodeToNode !== undefined,
        interface: this.ifname,
        impl: this.impl,
        port: this.port,
        publicKey: this.key?.publicKey ?? "",
        keyCreatedAt: this.key?.createdAt ?? new Date(0).toISOString(),
        rotation: {
          ...(every ? { intervalSeconds: Math.round(every / 1000) } : {}),
          ...(nextAt ? { nextAt } : {}),
          ...(r?.next ? { nextPublicKey: r.next.publicKey } : {}),
          rotations: r?.rotations ?? 0,
          ...(r?.lastError ? { lastError: r.lastError } : {}),
        },
        ...(err ? { lastError: err } : {}),
      },
      this.peers,
      live,
      this.view?.snapshot.records,
    );
  }

  /** Stops reconciling and rotating; the interface, its peers, routes and the strict table stay (the kernel keeps encrypting). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.rotation?.stop();
    await this.passes.running;
  }
}

const hostPrefix = (ip: string): string => `${ip}/${parseAddr(ip)?.family === 6 ? 128 : 32}`;
