/**
 * The real embedded store, refusing transactions etcd would refuse (more than
 * STORE_TXN_OPS operations) and failing the one numbered `failAt`: for tests
 * of controllers that write in chunks (store-txn.ts).
 */
import { STORE_TXN_OPS } from "../../../src/agent/controllers/identities.js";
import { MembraneError } from "../../../src/errors.js";
import type { EmbeddedStore } from "../../../src/store/embedded.js";
import type { Store, TxnRequest, TxnResult } from "../../../src/store/store.js";

export class EtcdLimits {
  txns = 0;
  sizes: number[] = [];
  failAt: number | undefined;
  readonly store: Store;
  constructor(readonly real: EmbeddedStore) {
    const txn = async (req: TxnRequest): Promise<TxnResult> => {
      this.txns++;
      if (req.ops.length > STORE_TXN_OPS)
        throw new MembraneError("STORE_FAILED", "etcdserver: too many operations in txn request");
      if (this.txns === this.failAt)
        throw new MembraneError("STORE_FAILED", `injected failure of transaction ${this.txns}`);
      this.sizes.push(req.ops.length);
      return real.txn(req);
    };
    this.store = new Proxy(real, {
      get: (t, k) => (k === "txn" ? txn : (Reflect.get(t, k) as unknown)),
    });
  }
}
