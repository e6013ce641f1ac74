/**
 * etcd's own count of writes, for "etcd writes per endpoint created": the
 * store revision (one per committed write transaction) and the member's
 * /metrics counters (keys put and deleted, transactions seen).
 */
import type { EtcdStore } from "../src/store/etcd.js";

export interface EtcdWrites {
  /** Store revision: +1 per committed write (a put, a delete or a txn with writes). */
  readonly revision: number;
  readonly puts: number;
  readonly deletes: number;
  readonly txns: number;
}

async function metrics(endpoint: string): Promise<Map<string, number>> {
  const res = await fetch(`${endpoint}/metrics`);
  const text = await res.text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = /^(etcd_mvcc_(?:put|delete|txn)_total) (\S+)$/.exec(line);
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

export async function etcdWrites(kv: EtcdStore, endpoint: string): Promise<EtcdWrites> {
  const [revision, m] = await Promise.all([kv.revision(), metrics(endpoint)]);
  return {
    revision,
    puts: m.get("etcd_mvcc_put_total") ?? NaN,
    deletes: m.get("etcd_mvcc_delete_total") ?? NaN,
    txns: m.get("etcd_mvcc_txn_total") ?? NaN,
  };
}

/** b - a, per `per` operations (one decimal). */
export function writesPer(a: EtcdWrites, b: EtcdWrites, per: number): Record<string, number> {
  const d = (x: number, y: number): number => Math.round(((y - x) / per) * 10) / 10;
  return {
    revisions: d(a.revision, b.revision),
    puts: d(a.puts, b.puts),
    deletes: d(a.deletes, b.deletes),
    txns: d(a.txns, b.txns),
  };
}
