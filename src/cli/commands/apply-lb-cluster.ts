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
 * The ranges: those the live agents run with, which each publishes in its node record (`lb`), so
 * that Services, Gateways and every node's tables agree without saying them twice; nodes that
 * disagree (or none publishing: no agent up, or older agents) are refused, naming them. Or, as
 * kube-apiserver is given --service-cluster-ip-range, the flags --service-cidr, --lb-pool and
 * --node-port-range (the agent's, with its defaults), which then win: the allocator is this command.
 */
import { pino } from "pino";
import type { LbApplyReport } from "../../agent/controllers/lb.js";
import { SVC_KEY, writeServices } from "../../agent/controllers/lb-reserve.js";
import { txnAllOrNone } from "../../agent/controllers/store-txn.js";
import { CLUSTER_KEYS } from "../../cluster/keys.js";
import { ClusterResourceStore } from "../../cluster/resource-store.js";
import { MembraneError } from "../../errors.js";
import { parseLbFlags, type LbFlags } from "../../lb/config.js";
import type { LbResources } from "../../lb/parse.js";
import type { LbConfig } from "../../lb/types.js";
import type { EtcdStore } from "../../store/etcd.js";
import type { TxnOp } from "../../store/store.js";

const SLICE_KEY = "lb/slices/";

/** `--service-cidr`, `--lb-pool`, `--node-port-range` of `membrane apply --cluster-store`. */
export type LbAllocFlags = Pick<LbFlags, "serviceCidr" | "lbPool" | "nodePortRange">;

/** The first of --service-cidr, --lb-pool, --node-port-range given (as written), or undefined. */
export function givenLbFlag(o: LbAllocFlags): string | undefined {
  const k = (["serviceCidr", "lbPool", "nodePortRange"] as const).find((f) => o[f] !== undefined);
  return k && `--${k.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`;
}

/** Writes (or deletes) the file's Services and EndpointSlices in the cluster's etcd, all or none. */
export async function applyLbToCluster(
  kv: EtcdStore,
  r: LbResources,
  op: "apply" | "delete",
  flags: LbAllocFlags,
): Promise<LbApplyReport> {
  const cfg = await rangesOf(kv, flags);
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

const DOING = "apply Services to the cluster store";

/** A family's range and the other family's, as one flag's value ("a" or "a,b"); undefined without `a`. */
const pair = (a: string | undefined, b: string | undefined): string | undefined =>
  a === undefined ? undefined : b === undefined ? a : `${a},${b}`;

/** `cfg` as the agent's flags. */
function flagsOf(cfg: LbConfig): string {
  const pool = pair(cfg.loadBalancerPool, cfg.loadBalancerPoolSecondary);
  return `--service-cidr ${pair(cfg.serviceCidr, cfg.serviceCidrSecondary)}${pool ? ` --lb-pool ${pool}` : ""} --node-port-range ${cfg.nodePortRange.join("-")}`; // prettier-ignore
}

/** The ranges to allocate from: the flags when given, else the ones every live node publishes (header). */
async function rangesOf(kv: EtcdStore, flags: LbAllocFlags): Promise<LbConfig> {
  if (flags.serviceCidr !== undefined || flags.lbPool !== undefined || flags.nodePortRange !== undefined)
    return parseLbFlags({ ...flags, doing: DOING });
  const byRanges = new Map<string, string[]>(); // the ranges as flags -> the nodes running with them
  const seen: LbConfig[] = [];
  for (const rec of (await kv.list(CLUSTER_KEYS.nodes)).kvs) {
    const node = rec.key.slice(CLUSTER_KEYS.nodes.length);
    const cfg = publishedRanges(rec.value, node);
    if (cfg === undefined) continue;
    const f = flagsOf(cfg);
    if (!byRanges.has(f)) seen.push(cfg);
    byRanges.set(f, [...(byRanges.get(f) ?? []), node]);
  }
  const hint =
    "give the ranges to allocate from, as the agents' flags: --service-cidr, --lb-pool, --node-port-range";
  if (byRanges.size > 1)
    throw new MembraneError(
      "CLUSTER_INVALID",
      `Cannot ${DOING}: the nodes run with different service ranges (${[...byRanges].map(([f, ns]) => `${ns.join(", ")}: ${f}`).join("; ")})`,
      { hint: `${hint} (and start the agents with the same ones)` },
    );
  const cfg = seen[0];
  if (cfg === undefined)
    throw new MembraneError(
      "CLI_USAGE",
      `Cannot ${DOING}: no live node publishes the service ranges it runs with (no agent is up, or they are older than this command)`,
      { hint },
    );
  return cfg;
}

/** A node record's `lb` (untrusted: read through the agent's own flag checks), undefined without one. */
function publishedRanges(value: string, node: string): LbConfig | undefined {
  let lb: unknown;
  try {
    lb = (JSON.parse(value) as { lb?: unknown }).lb;
  } catch {
    return undefined; // not a record: not a node that says anything
  }
  if (lb === undefined) return undefined;
  const o = (typeof lb === "object" && lb !== null ? lb : {}) as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof o[k] === "string" ? o[k] : undefined);
  const range = o["nodePortRange"];
  const pool = pair(str("loadBalancerPool"), str("loadBalancerPoolSecondary"));
  return parseLbFlags({
    serviceCidr: pair(str("serviceCidr"), str("serviceCidrSecondary")) ?? "",
    ...(pool !== undefined ? { lbPool: pool } : {}),
    nodePortRange: Array.isArray(range) ? range.join("-") : "",
    doing: `use the service ranges node ${node} publishes (cluster/nodes/${node}, lb)`,
  });
}
