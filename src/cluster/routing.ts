/**
 * Routing between nodes (cluster mode): the live node set -> routes in this
 * node's namespace to every peer's pod CIDRs (datapath/peer-routes.ts:
 * native via the peer's address, or through one VXLAN device).
 *
 *   NodeView (nodes/, podcidrs/) --peers()--> reconcilePeerRoutes (coalesced, one at a time)
 *
 * Only CIDRs a peer owns (pod-cidrs.ts) are routed, never one that overlaps
 * this node's own. Peers gone -> their routes gone. Stopping leaves the
 * routes as they are (a restarted agent reconciles and changes nothing).
 */
import { Coalescer } from "./coalesce.js";
import type { Logger } from "pino";
import { containsPrefix, parseAddr, prefixString } from "../labels/cidr.js";
import {
  desiredRoutes,
  reconcilePeerRoutes,
  type PeerNode,
  type PeerRoutingConfig,
} from "../datapath/peer-routes.js";
import type { NodeSnapshot, NodeView } from "./node-view.js";

export interface ClusterRoutingParams {
  readonly node: string;
  readonly view: NodeView;
  readonly routing: PeerRoutingConfig;
  readonly logger: Logger;
  /** --encryption wireguard|ipsec: the interface peers that publish a key of the mode are routed through. */
  readonly encryptDevice?: string;
  /** The mode whose records count (default wireguard). */
  readonly encryptMode?: "wireguard" | "ipsec";
  /** Retry after a failed reconcile (default 5 s). */
  readonly retryMs?: number;
}

export class ClusterRouting {
  private readonly passes = new Coalescer(
    () => this.reconcileOnce(),
    () => this.stopped,
  );
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  /** The last reconcile's error (shown in status), undefined after one succeeded. */
  lastError: string | undefined;
  /** Reconciles that changed something, and the lines they ran (last one). */
  changes = 0;
  lastChanges: string[] = [];
  /** Reasons already logged (once each). */
  private readonly reported = new Set<string>();

  /** Reconciles run (each reads the kernel's routes with `ip`: a few process spawns). */
  reconciles = 0;
  /** The peers the last successful reconcile put in the kernel (JSON), undefined after a failure. */
  private appliedKey: string | undefined;

  constructor(private readonly p: ClusterRoutingParams) {
    p.view.onChange(() => this.viewChanged());
  }

  /**
   * A registry change reconciles only when the peers to route to changed (a node's labels, a
   * claim before its record, a status do not): with 100 nodes registering, half the events
   * changed nothing here and each cost `ip` spawns. While a pass runs, every change asks for
   * another (it may have started from older peers). trigger() (start, resync) always runs.
   */
  private viewChanged(): void {
    if (this.passes.running === undefined && this.appliedKey === JSON.stringify(this.peers())) return;
    void this.trigger();
  }

  /** The peers to route to, from a node snapshot (this node left out, its own CIDRs never routed away). */
  peers(s: NodeSnapshot = this.p.view.snapshot): PeerNode[] {
    const mine = s.owned.get(this.p.node) ?? [];
    const family = parseAddr(this.p.routing.localIp)?.family;
    const out: PeerNode[] = [];
    for (const [name, r] of s.records) {
      if (name === this.p.node) continue;
      const ip = family === 6 ? r.record.addresses.ipv6 : r.record.addresses.ipv4;
      if (ip === undefined) continue;
      const why = `${name} routes ${r.record.routing}, this node ${this.p.routing.mode}: traffic between them will not pass`;
      if (r.record.routing !== this.p.routing.mode && !this.reported.has(why)) {
        this.reported.add(why);
        this.p.logger.warn({ peer: name }, why);
      }
      const cidrs = (s.owned.get(name) ?? []).filter(
        (c) => !mine.some((m) => containsPrefix(m, c) || containsPrefix(c, m)),
      );
      const dev = this.p.encryptDevice;
      const encrypted =
        dev !== undefined && r.record.encryption?.type === (this.p.encryptMode ?? "wireguard");
      out.push({ name, ip, podCidrs: cidrs.map(prefixString), ...(encrypted ? { dev } : {}) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  /** Reconciles now (and once more if triggered meanwhile); resolves when done. */
  trigger(): Promise<void> {
    return this.passes.run();
  }

  private async reconcileOnce(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
    this.reconciles++;
    this.appliedKey = undefined;
    try {
      const peers = this.peers();
      for (const why of desiredRoutes(this.p.routing, peers).skipped) {
        if (this.reported.has(why)) continue;
        this.reported.add(why);
        this.p.logger.warn({ why }, "no route to a peer's pod CIDR");
      }
      const lines = await reconcilePeerRoutes(this.p.routing, peers);
      this.appliedKey = JSON.stringify(peers);
      this.lastError = undefined;
      if (lines.length > 0) {
        this.changes++;
        this.lastChanges = lines;
        this.p.logger.info({ changes: lines.length }, "routes to peers reconciled");
      }
    } catch (e) {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.p.logger.error({ err: this.lastError }, "routes to peers failed; retrying");
      if (!this.stopped) (this.retry = setTimeout(() => void this.trigger(), this.p.retryMs ?? 5000)).unref();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.passes.running;
  }
}
