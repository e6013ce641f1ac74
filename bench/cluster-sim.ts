/**
 * Simulated nodes for the cluster benchmark, written straight into etcd with
 * the real key layout (src/cluster/keys.ts), so that the real agents ingest
 * them as they would other agents' writes:
 *
 *   per simulated node s:  cluster/podcidrs/<s>        {ipv4: 10.<64+s/256>.<s%256>.0/24}  persistent
 *                          cluster/nodes/<s>           NodeRecordV1 (172.31.0.<100+s>)      on the sims' lease
 *                          cluster/identities/<s>/<id> its label sets' claims              on the lease
 *                          cluster/ipcache/<s>/<ip>    one per endpoint, txns of 128 ops   on the lease
 *
 * One lease for all simulated nodes (one keep-alive instead of 100; the keys
 * written are the same). Label sets: `app=sim-<k>` for k < labelSets, endpoint
 * j of node s gets k = (s*endpoints + j) % labelSets; the sims claim numbers
 * from 20000 up, before the real nodes see them (the earliest claim owns a number).
 */
import { labelStrings } from "../src/agent/controllers/cluster-identities.js";
import {
  identitiesPrefix,
  ipcachePrefix,
  nodeKey,
  podCidrKey,
  type IdentityClaimV1,
  type IpcacheEntryV1,
  type NodeRecordV1,
  type PodCidrClaimV1,
} from "../src/cluster/keys.js";
import { IPCACHE_TXN_OPS } from "../src/cluster/ipcache-publish.js";
import { identityRelevant, workloadLabels } from "../src/labels/k8s.js";
import type { EtcdStore, StoreLease } from "../src/store/etcd.js";
import type { TxnOp } from "../src/store/store.js";

export interface SimSpec {
  readonly nodes: number;
  readonly endpoints: number;
  readonly labelSets: number;
  /** The sims' node names are `<stem>-s<i>`. */
  readonly stem: string;
}

export const SIM_ID_BASE = 20000;

export const simLabels = (k: number): Record<string, string> => ({ app: `sim-${k}` });

const claimLabels = (k: number): string[] =>
  labelStrings(
    identityRelevant(workloadLabels({ namespace: "default", labels: simLabels(k), cluster: "default" })),
  );

/** Writes every simulated node; resolves with the number of txns (= etcd revisions) it took. */
export async function writeSims(kv: EtcdStore, lease: StoreLease, s: SimSpec): Promise<number> {
  if (s.nodes > 100 || s.endpoints > 250) throw new Error("at most 100 simulated nodes of 250 endpoints");
  let txns = 0;
  const flush = async (ops: TxnOp[]): Promise<void> => {
    for (let i = 0; i < ops.length; i += IPCACHE_TXN_OPS) {
      await kv.txn({ compare: [], ops: ops.slice(i, i + IPCACHE_TXN_OPS) });
      txns++;
    }
  };
  for (let n = 0; n < s.nodes; n++) {
    const name = `${s.stem}-s${n}`;
    const cidr = `10.${64 + (n >> 8)}.${n & 255}.0/24`;
    const claim: PodCidrClaimV1 = { v: 1, ipv4: cidr, allocated: false };
    const rec: NodeRecordV1 = {
      v: 1,
      name,
      addresses: { ipv4: `172.31.0.${100 + n}` },
      podCidrs: [cidr],
      labels: { sim: "true" },
      routing: "native",
      bootId: `sim-${n}`,
      startedAt: new Date().toISOString(),
    };
    // The claim first (persistent), then the record on the lease: as a real node registers.
    await flush([{ type: "put", key: podCidrKey(name), value: JSON.stringify(claim) }]);
    await flush([{ type: "put", key: nodeKey(name), value: JSON.stringify(rec), lease: lease.id }]);
    const ops: TxnOp[] = [];
    const used = new Set<number>();
    for (let j = 0; j < s.endpoints; j++) used.add((n * s.endpoints + j) % s.labelSets);
    for (const k of used) {
      const v: IdentityClaimV1 = { v: 1, labels: claimLabels(k) };
      ops.push({
        type: "put",
        key: identitiesPrefix(name) + String(SIM_ID_BASE + k),
        value: JSON.stringify(v),
        lease: lease.id,
      });
    }
    await flush(ops.splice(0));
    for (let j = 0; j < s.endpoints; j++) {
      const k = (n * s.endpoints + j) % s.labelSets;
      const ip = cidr.replace(/0\/24$/, String(j + 2));
      const e: IpcacheEntryV1 = {
        v: 1,
        identity: SIM_ID_BASE + k,
        namespace: "default",
        name: `sim-${n}-${j}`,
        labels: simLabels(k),
      };
      ops.push({ type: "put", key: ipcachePrefix(name) + ip, value: JSON.stringify(e), lease: lease.id });
    }
    await flush(ops);
  }
  return txns;
}
