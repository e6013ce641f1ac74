/**
 * A restarted agent takes over the keys its previous run left on its lease.
 *
 *   open(): grant lease ──▶ list nodes/<me>, status/<me>, identities/<me>/, ipcache/<me>/
 *                      ──▶ put each again, same value, on the new lease (only if unchanged since listed)
 *
 * The previous run (killed with -9, or stopped: its lease released, not
 * revoked) left its keys on a lease that etcd deletes TTL seconds after its
 * last keep-alive. The agent's parts put them again only once the agent has
 * started (restore, first enforce, endpoints adopted), which can take longer
 * than the TTL on a loaded host: peers then saw the node leave (routes,
 * pods and claims gone) and come back. Taken over here, first thing after the
 * lease is granted, they never go. Same values: the kernel state they describe
 * is the one the restart adopts; the parts' first passes correct them after.
 * An identity claim put again keeps its createRevision (the key exists), so the
 * node keeps its place. A key that changed or went meanwhile is left to the parts.
 */
import type { Logger } from "pino";
import type { StoreLease } from "../store/etcd.js";
import type { KeyValue, Store, TxnOp } from "../store/store.js";
import { identitiesPrefix, ipcachePrefix, nodeKey, statusKey } from "./keys.js";

/** Keys per transaction (etcd's default limit is 128 operations). */
const TXN_KEYS = 128;

/** Puts this node's leased keys again on `lease`; returns how many were taken over. */
export async function takeOverLeasedKeys(
  kv: Pick<Store, "list" | "txn">,
  node: string,
  lease: StoreLease,
  log: Logger,
): Promise<number> {
  const exact = [nodeKey(node), statusKey(node)];
  const found: KeyValue[] = [];
  for (const p of [...exact, identitiesPrefix(node), ipcachePrefix(node)]) {
    // nodes/<me> as a prefix would also list nodes/<me>-2: exact keys are matched exactly.
    for (const e of (await kv.list(p)).kvs) if (!exact.includes(p) || e.key === p) found.push(e);
  }
  let taken = 0;
  for (let i = 0; i < found.length; i += TXN_KEYS) {
    const chunk = found.slice(i, i + TXN_KEYS);
    const ops: TxnOp[] = chunk.map((e) => ({ type: "put", key: e.key, value: e.value, lease: lease.id }));
    const r = await kv.txn({ compare: chunk.map((e) => ({ key: e.key, modRevision: e.modRevision })), ops });
    if (r.succeeded) taken += chunk.length;
  }
  if (found.length > 0)
    log.info({ keys: taken, found: found.length }, "took over the previous run's keys on the new lease");
  return taken;
}
