/**
 * Node addresses from the cluster registry: every other node's underlay
 * addresses are `remote-node` in the local ipcache, with that node's labels
 * (its record's `labels`, `--node-labels`: policy/node-addresses.ts gives a
 * labelled node an identity fromNodes/toNodes select by those labels), this
 * node's own are `host` (engine.setNodeAddress). What was set is recorded in
 * the agent's local store (`cluster-node-addresses`), so that after a restart
 * the addresses of nodes that left meanwhile are removed, and nothing else.
 * A node whose labels change is set again.
 */
import type { Logger } from "pino";
import { addrString, parseAddr } from "../labels/cidr.js";
import type { Store } from "../store/store.js";
import type { NodeSnapshot } from "./node-view.js";

export type ClusterNodeKind = "host" | "remote-node";

export type NodeLabels = Readonly<Record<string, string>>;

export interface NodeAddressSink {
  setNodeAddress(ip: string, kind: ClusterNodeKind, labels?: NodeLabels): Promise<void>;
  deleteNodeAddress(ip: string): Promise<void>;
}

/** What one address should be: its kind, a remote node's labels, and their signature. */
interface Wanted {
  readonly kind: ClusterNodeKind;
  readonly labels?: NodeLabels;
  readonly sig: string;
}

/** Local store key of the addresses this sync set: JSON {ip: kind}. */
export const OWNED_NODE_ADDRS_KEY = "cluster-node-addresses";

export class NodeAddressSync {
  /** ip -> what was set: kind, and the labels as JSON (a change sets it again). */
  private sent: Map<string, Wanted & { readonly sig?: string }> | undefined;

  constructor(
    private readonly node: string,
    private readonly sink: NodeAddressSink,
    private readonly logger: Logger,
    private readonly store: Store | undefined,
  ) {}

  /** The addresses a snapshot wants: peers -> remote-node, this node -> host. */
  desired(snap: NodeSnapshot, own: { ipv4?: string; ipv6?: string }): Map<string, Wanted> {
    const out = new Map<string, Wanted>();
    const add = (ip: string | undefined, kind: ClusterNodeKind, labels?: NodeLabels): void => {
      const a = ip === undefined ? undefined : parseAddr(ip);
      const sig = labels === undefined ? "" : JSON.stringify(Object.entries(labels).sort());
      if (a) out.set(addrString(a.family, a.value), labels ? { kind, labels, sig } : { kind, sig });
    };
    for (const [name, r] of snap.records) {
      if (name === this.node) continue;
      const labels = Object.keys(r.record.labels).length > 0 ? r.record.labels : undefined;
      add(r.record.addresses.ipv4, "remote-node", labels);
      add(r.record.addresses.ipv6, "remote-node", labels);
    }
    // This node wins over a peer that claims its address.
    add(own.ipv4, "host");
    add(own.ipv6, "host");
    return out;
  }

  async apply(snap: NodeSnapshot, own: { ipv4?: string; ipv6?: string }): Promise<void> {
    if (!this.sent) {
      const v = await this.store?.get(OWNED_NODE_ADDRS_KEY);
      const kinds = v ? (JSON.parse(v.value) as Record<string, ClusterNodeKind>) : {};
      this.sent = new Map(Object.entries(kinds).map(([ip, kind]) => [ip, { kind, sig: "" }]));
      // Whatever the record says, the first pass sets every wanted address (the local store may lag).
      for (const [ip] of this.desired(snap, own)) this.sent.delete(ip);
    }
    const want = this.desired(snap, own);
    let changed = false;
    for (const [ip, w] of want) {
      const had = this.sent.get(ip);
      if (had?.kind === w.kind && had.sig === w.sig) continue;
      await this.sink.setNodeAddress(ip, w.kind, ...(w.labels ? [w.labels] : []));
      this.sent.set(ip, w);
      changed = true;
    }
    for (const ip of [...this.sent.keys()]) {
      if (want.has(ip)) continue;
      await this.sink.deleteNodeAddress(ip);
      this.sent.delete(ip);
      changed = true;
    }
    if (changed) {
      const kinds = Object.fromEntries([...this.sent].map(([ip, w]) => [ip, w.kind]));
      await this.store?.put(OWNED_NODE_ADDRS_KEY, JSON.stringify(kinds));
      this.logger.info({ addresses: this.sent.size }, "cluster node addresses set");
    }
  }
}
