/** A store that counts its list() calls (how often a part reads a prefix), everything else passed through. */
import type { Store } from "../../src/store/store.js";

export function countingLists(s: Store): { store: Store; lists: () => number } {
  let lists = 0;
  const store: Store = {
    get: (k) => s.get(k),
    list: (p) => {
      lists++;
      return s.list(p);
    },
    put: (k, v) => s.put(k, v),
    delete: (k) => s.delete(k),
    txn: (r) => s.txn(r),
    watch: (p, rev, cb, o) => s.watch(p, rev, cb, o),
    revision: () => s.revision(),
    close: () => s.close(),
  };
  return { store, lists: () => lists };
}
