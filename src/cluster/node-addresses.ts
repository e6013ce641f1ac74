/**
 * Node addresses from the cluster registry: every other node's underlay
 * addresses are `remote-node` in the local ipcache, this node's own are
 * `host` (engine.setNodeAddress). What was set is recorded in the agent's
 * local store (`cluster-node-addresses`), so that after a restart the
 * addresses of nodes that left meanwhile are removed, and nothing else.
 */
import type { Logger } from "pino";
import { addrString, parseAddr } from "../labels/cidr.js";
import type { Store } from "../store/store.js";
import type { NodeSnapshot } from "./node-view.js";

export type ClusterNodeKind = "host" | "remote-node";

export interface NodeAddressSink {
  setNodeAddress(ip: string, kind: ClusterNodeKind): Promise<void>;
  deleteNodeAddress(ip: string): Promise<void>;
}

/** Local store key of the addresses this sync set: JSON {ip: kind}. */
export const OWNED_NODE_ADDRS_KEY = "cluster-node-addresses";

export class NodeAddressSync {
  private sent: Map<string, ClusterNodeKind> | undefined;

  constructor(
    private readonly node: string,
    private readonly sink: NodeAddressSink,
    private readonly logger: Logger,
    private readonly store: Store | undefined,
  ) {}

  /** The addresses a snapshot wants: peers -> remote-node, this node -> host. */
  desired(snap: NodeSnapshot, own: { ipv4?: string; ipv6?: string }): Map<string, ClusterNodeKind> {
    const out = new Map<string, ClusterNodeKind>();
    const add = (ip: string | undefined, kind: ClusterNodeKind): void => {
      const a = ip === undefined ? undefined : parseAddr(ip);
      if (a) out.set(addrString(a.family, a.value), kind);
    };
    for (const [name, r] of snap.records) {
      if (name === this.node) continue;
      add(r.record.addresses.ipv4, "remote-node");
      add(r.record.addresses.ipv6, "remote-node");
    }
    // This node wins over a peer that claims its address.
    add(own.ipv4, "host");
    add(own.ipv6, "host");
    return out;
  }

  async apply(snap: NodeSnapshot, own: { ipv4?: string; ipv6?: string }): Promise<void> {
    if (!this.sent) {
      const v = await this.store?.get(OWNED_NODE_ADDRS_KEY);
      this.sent = new Map(Object.entries(v ? (JSON.parse(v.value) as Record<string, ClusterNodeKind>) : {}));
      // Whatever the record says, the first pass sets every wanted address (the local store may lag).
      for (const [ip] of this.desired(snap, own)) this.sent.delete(ip);
    }
    const want = this.desired(snap, own);
    let changed = false;
    for (const [ip, kind] of want) {
      if (this.sent.get(ip) === kind) continue;
      await this.sink.setNodeAddress(ip, kind);
      this.sent.set(ip, kind);
      changed = true;
    }
    for (const ip of [...this.sent.keys()]) {
      if (want.has(ip)) continue;
      await this.sink.deleteNodeAddress(ip);
      this.sent.delete(ip);
      changed = true;
    }
    if (changed) {
      await this.store?.put(OWNED_NODE_ADDRS_KEY, JSON.stringify(Object.fromEntries(this.sent)));
      this.logger.info({ addresses: this.sent.size }, "cluster node addresses set");
    }
  }
}
