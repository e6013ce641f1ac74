/**
 * One all-or-none change of many keys, written as several store
 * transactions: etcd holds at most STORE_TXN_OPS (its --max-txn-ops default,
 * 128) operations per transaction, so a policy file of 300 policies or a bulk
 * of remote endpoints cannot go in one.
 *
 *   ops ──txn(ops[0..128))──txn(ops[128..256))── ... ──> done
 *                 a later txn fails ──> undo the ones before (put back
 *                 what `before(key)` says the store held, or delete) ──> throw
 *
 * The caller changes its in-memory view only after this resolves, so
 * `before` reads the view the store held until now. Keys must be distinct.
 */
import type { Store, TxnOp } from "../../store/store.js";
import { STORE_TXN_OPS } from "./identities.js";

export interface ChunkedWrite {
  readonly store: Store;
  readonly ops: readonly TxnOp[];
  /** The value `key` (full store key) held before these ops; undefined: it did not exist. */
  readonly before: (key: string) => string | undefined;
  /** Told when the undo itself failed (the store may then hold part of the change). */
  readonly undoFailed: (e: unknown) => void;
}

/** Writes `ops` in transactions of at most STORE_TXN_OPS; on a failure undoes the written ones and rethrows. */
export async function txnAllOrNone(w: ChunkedWrite): Promise<void> {
  const done: TxnOp[] = [];
  try {
    for (let i = 0; i < w.ops.length; i += STORE_TXN_OPS) {
      const part = w.ops.slice(i, i + STORE_TXN_OPS);
      await w.store.txn({ compare: [], ops: part });
      done.push(...part);
    }
  } catch (e) {
    await undo(w, done).catch(w.undoFailed);
    throw e;
  }
}

async function undo(w: ChunkedWrite, done: readonly TxnOp[]): Promise<void> {
  const back: TxnOp[] = done.map((op) => {
    const old = w.before(op.key);
    return old !== undefined ? { type: "put", key: op.key, value: old } : { type: "delete", key: op.key };
  });
  for (let i = 0; i < back.length; i += STORE_TXN_OPS) {
    await w.store.txn({ compare: [], ops: back.slice(i, i + STORE_TXN_OPS) });
  }
}
