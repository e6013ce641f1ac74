/**
 * `membrane apply|delete -f services.yaml --cluster-store etcd://...` with the admin's
 * credentials: v1 Services and EndpointSlices written straight to etcd, their ClusterIPs,
 * NodePorts and LoadBalancer addresses allocated and reserved here, as Kubernetes' apiserver (and
 * Cilium's LB-IPAM) allocate them and not the nodes. Under the roles of `membrane cluster
 * etcd-setup` only membrane-admin may write `cluster/lb/services/`, `lb/slices/` and `lb/alloc/`.
 *
 *   file --parse whole--> slices --txn (all or none)--> cluster/lb/slices/
 *        --> Services --allocate + reserve (agent/controllers/lb-reserve.ts, the agent's own code)--> cluster/lb/
 *        a refusal (an address another holds, the store) --> the slices put back: nothing changed
 *
 * The ranges come from --service-cidr, --lb-pool and --node-port-range (the agent's flags, and its
 * defaults): this command is the allocator, so it is given them, as kube-apiserver is given
 * --service-cluster-ip-range. Give the values the agents run with: a Gateway's address comes from
 * the agent's --lb-pool, and an address outside it is still held once (the reservations are shared).
 */
import { pino } from "pino";
import type { LbApplyReport } from "../../agent/controllers/lb.js";
import { SVC_KEY, writeServices } from "../../agent/controllers/lb-reserve.js";
import { txnAllOrNone } from "../../agent/controllers/store-txn.js";
import { ClusterResourceStore } from "../../cluster/resource-store.js";
import { parseLbFlags, type LbFlags } from "../../lb/config.js";
import type { LbResources } from "../../lb/parse.js";
import type { EtcdStore } from "../../store/etcd.js";
import type { TxnOp } from "../../store/store.js";

const SLICE_KEY = "lb/slices/";

/** `--service-cidr`, `--lb-pool`, `--node-port-range` of `membrane apply --cluster-store`. */
export type LbAllocFlags = Pick<LbFlags, "serviceCidr" | "lbPool" | "nodePortRange">;

/** Writes (or deletes) the file's Services and EndpointSlices in the cluster's etcd, all or none. */
export async function applyLbToCluster(
  kv: EtcdStore,
  r: LbResources,
  op: "apply" | "delete",
  flags: LbAllocFlags,
): Promise<LbApplyReport> {
  const cfg = parseLbFlags({ ...flags, doing: "apply Services to the cluster store" });
  const store = new ClusterResourceStore(kv, kv); // lb/... -> cluster/lb/..., lastWrite kept
  const logger = pino({ level: "silent" });
  const resources: LbApplyReport["resources"] = [];
  const ops: TxnOp[] = [];
  const before = new Map<string, string>();
  for (const sl of r.slices) {
    const id = `${sl.namespace}/${sl.name}`;
    const old = await store.get(SLICE_KEY + id);
    if (old) before.set(SLICE_KEY + id, old.value);
    const value = op === "apply" ? JSON.stringify(sl) : undefined;
    const status = value === undefined ? (old ? "deleted" : "unchanged") : !old ? "created" : old.value === value ? "unchanged" : "configured"; // prettier-ignore
    resources.push({ kind: "EndpointSlice", name: id, status });
    if (status === "unchanged") continue;
    ops.push(value === undefined ? { type: "delete", key: SLICE_KEY + id } : { type: "put", key: SLICE_KEY + id, value }); // prettier-ignore
  }
  const undoFailed = (e: unknown): void => logger.error({ err: String(e) }, "slices partly written");
  await txnAllOrNone({ store, ops, before: (k) => before.get(k), undoFailed });
  let written;
  try {
    written = await writeServices({ store, logger, cfg, op, services: r.services });
  } catch (e) {
    // The Services were refused (or the store failed): the slices go back as they were.
    const back = ops.map((o): TxnOp => {
      const old = before.get(o.key);
      return old !== undefined ? { type: "put", key: o.key, value: old } : { type: "delete", key: o.key };
    });
    await txnAllOrNone({ store, ops: back, before: () => undefined, undoFailed });
    throw e;
  }
  for (const [name, w] of written) resources.push({ kind: "Service", name, status: w.status });
  // What --wait waits for: this write, or (nothing changed) the records as they are.
  let held = store.lastWrite;
  for (const x of resources) {
    const key = `${x.kind === "Service" ? SVC_KEY : SLICE_KEY}${x.name}`;
    held = Math.max(held, (await store.get(key))?.modRevision ?? 0);
  }
  return { resources, clusterRevision: held };
}
