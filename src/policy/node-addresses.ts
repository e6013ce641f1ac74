/**
 * Node addresses in the engine: this node (`host`), other nodes (`remote-node`)
 * and API server backends (`kube-apiserver`), each an exact ipcache entry of
 * source "node".
 *
 *   ip, remote-node, {role: web} --> local identity {reserved:remote-node, k8s:role=web} (>= 2^24)
 *   ip, remote-node, {}          --> reserved remote-node (6)
 *
 * Remote node labels (Cilium's `--enable-node-selector-labels`): a remote node
 * with labels gets a node-local identity made of `reserved:remote-node` and its
 * labels (source k8s, as labels/node.ts), so `fromNodes`/`toNodes` select it by
 * its labels and `remote-node`/`cluster` entities still do. Node-local, not
 * cluster-wide: every node computes it from the same registry record, the number
 * never leaves the node (the kernel's ipcache is per node), and no etcd write is
 * needed. Nodes with the same labels share one identity (refcounted).
 */
import type { IdentityAllocatorLike } from "../identity/allocator.js";
import { ID } from "../identity/reserved.js";
import type { IPCache } from "../ipcache/ipcache.js";
import type { SelectorCache } from "./selectorcache.js";
import { LabelSet } from "../labels/label.js";
import { nodeLabelSet } from "../labels/node.js";

/** `ingress`: the gateway's source address (src/gateway/ingress-netns.ts), reserved identity 8. */
export type NodeAddressKind = "host" | "remote-node" | "kube-apiserver" | "ingress";

export interface NodeAddress {
  readonly kind: NodeAddressKind;
  /** Remote nodes only: the node's labels (none or empty: the reserved remote-node identity). */
  readonly labels?: Readonly<Record<string, string>>;
}

export interface NodeAddressDeps {
  readonly allocator: IdentityAllocatorLike;
  readonly ipcache: IPCache;
  readonly cache: SelectorCache;
  /** Selectors whose selections changed (their users must recompute). */
  readonly changed: (selectorKeys: readonly string[]) => void;
  /** Drops one reference of a node-local identity. */
  readonly release: (id: number) => void;
}

/** The identity labels of a remote node with `labels`; throws LABEL_INVALID naming a bad label. */
export function remoteNodeLabels(labels: Readonly<Record<string, string>>): LabelSet {
  return LabelSet.from([{ source: "reserved", key: "remote-node", value: "" }, ...nodeLabelSet(labels)]);
}

export class NodeAddresses {
  private readonly addrs = new Map<string, NodeAddress & { readonly identity: number }>();

  constructor(private readonly d: NodeAddressDeps) {}

  /** Sets `ip`'s node identity; labels are checked first (a rejected call changes nothing). */
  set(ip: string, addr: NodeAddress): void {
    const labels =
      addr.kind === "remote-node" && addr.labels !== undefined && Object.keys(addr.labels).length > 0
        ? remoteNodeLabels(addr.labels)
        : undefined;
    let identity: number;
    if (labels) {
      // Make-before-break: the new identity is known before the old one is released.
      const ident = this.d.allocator.allocateLocal(labels);
      this.d.changed(this.d.cache.upsertIdentity(ident));
      identity = ident.id;
    } else {
      identity =
        addr.kind === "host"
          ? ID.host
          : addr.kind === "remote-node"
            ? ID.remoteNode
            : addr.kind === "ingress"
              ? ID.ingress
              : ID.kubeApiserver;
    }
    const old = this.addrs.get(ip);
    this.addrs.set(ip, { ...addr, identity });
    this.d.ipcache.setExact(ip, identity, "node");
    if (old && isNodeLocal(old.identity)) this.d.release(old.identity);
  }

  /** Forgets a node address (an endpoint's entry for it is left alone); false when it was not known. */
  delete(ip: string): boolean {
    const old = this.addrs.get(ip);
    if (!old) return false;
    this.addrs.delete(ip);
    if (this.d.ipcache.lookup(ip).entry?.source === "node") this.d.ipcache.deleteExact(ip);
    if (isNodeLocal(old.identity)) this.d.release(old.identity);
    return true;
  }

  entries(): Iterable<[string, NodeAddress]> {
    return [...this.addrs].map(([ip, a]) => [
      ip,
      a.labels === undefined ? { kind: a.kind } : { kind: a.kind, labels: a.labels },
    ]);
  }
}

const isNodeLocal = (id: number): boolean =>
  id !== ID.host && id !== ID.remoteNode && id !== ID.kubeApiserver;
