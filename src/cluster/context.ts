/**
 * What every cluster-mode part is built from (`membrane agent --cluster-store`).
 *
 *   runAgent ──▶ ClusterContext { kv: etcd, lease, node } ──▶ registry, identities, ipcache, resources
 *
 * The agent keeps its node-local state (endpoints, IPAM) in the embedded store
 * of its state directory, as without a cluster; `kv` is the shared etcd, used
 * only under `cluster/` (keys.ts). `lease` is the node's one lease: every key
 * that dies with the node (keys.ts says which) is put with `lease: lease.id`.
 */
import type { Logger } from "pino";
import type { EtcdStore, StoreLease } from "../store/etcd.js";

export interface ClusterContext {
  readonly kv: EtcdStore;
  readonly lease: StoreLease;
  /** This node's name (validated, keys.ts validateNodeName). */
  readonly node: string;
  /** This node's underlay addresses. */
  readonly nodeIp: { readonly ipv4?: string; readonly ipv6?: string };
  readonly logger: Logger;
  /**
   * Runs `cb` after the node's lease was lost and re-granted (session.ts): the keys put on the
   * old lease are gone; the part puts them again on `lease` (also `ctx.lease` from then on).
   * Returns an unsubscribe. Optional so that tests may build a context by hand.
   */
  readonly onLeaseRenewed?: (cb: (lease: StoreLease) => Promise<void> | void) => () => void;
}
