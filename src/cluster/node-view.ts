/**
 * The node registry as this node sees it: `cluster/nodes/` and
 * `cluster/podcidrs/` mirrored from the store, read as untrusted records.
 * Shared by routing (routes to peers) and the ipcache sync (node addresses,
 * which pods a node may publish).
 *
 *   nodes/*, podcidrs/* --PrefixMirror--> records, owned pod CIDRs --> listeners (coalesced)
 */
import type { Logger } from "pino";
import type { Prefix } from "../labels/cidr.js";
import type { Store } from "../store/store.js";
import { CLUSTER_KEYS } from "./keys.js";
import { PrefixMirror } from "./mirror.js";
import { nodeRecords, type PeerRecord } from "./node-record.js";
import { ownedPodCidrs } from "./pod-cidrs.js";

export interface NodeSnapshot {
  readonly records: ReadonlyMap<string, PeerRecord>;
  /** node -> pod CIDRs it owns (pod-cidrs.ts). */
  readonly owned: ReadonlyMap<string, readonly Prefix[]>;
}

export class NodeView {
  private readonly nodes: PrefixMirror;
  private readonly claims: PrefixMirror;
  private readonly listeners: ((s: NodeSnapshot) => void)[] = [];
  private snap: NodeSnapshot = { records: new Map(), owned: new Map() };
  private pending = false;
  private started = false;
  /** Reasons already logged (a bad record is reported once, not on every change). */
  private readonly reported = new Set<string>();

  constructor(
    kv: Store,
    private readonly logger: Logger,
  ) {
    const changed = (): void => this.schedule();
    this.nodes = new PrefixMirror(kv, CLUSTER_KEYS.nodes, logger, changed);
    this.claims = new PrefixMirror(kv, CLUSTER_KEYS.podCidrs, logger, changed);
  }

  get snapshot(): NodeSnapshot {
    return this.snap;
  }

  onChange(f: (s: NodeSnapshot) => void): void {
    this.listeners.push(f);
  }

  async start(): Promise<void> {
    await this.claims.start();
    await this.nodes.start();
    this.started = true;
    this.recompute();
  }

  async stop(): Promise<void> {
    this.started = false;
    await this.nodes.stop();
    await this.claims.stop();
  }

  /** Bursts of events (a txn of 128 keys) become one recompute. */
  private schedule(): void {
    if (this.pending || !this.started) return;
    this.pending = true;
    setImmediate(() => {
      this.pending = false;
      if (this.started) this.recompute();
    });
  }

  private recompute(): void {
    const bad = (why: string): void => {
      if (this.reported.has(why)) return;
      if (this.reported.size > 1000) this.reported.clear();
      this.reported.add(why);
      this.logger.warn({ why }, "ignored a cluster node record");
    };
    const records = nodeRecords(this.nodes.entries, bad);
    this.snap = { records, owned: ownedPodCidrs(records, this.claims.entries, bad) };
    for (const f of this.listeners) f(this.snap);
  }
}
