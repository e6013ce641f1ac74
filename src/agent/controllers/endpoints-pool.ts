/**
 * The endpoints controller's helpers for a create: the pool of namespaces
 * made ahead of time (datapath/endpoint-pool.ts), its failures logged, and
 * the record's write with its address lease in one transaction.
 */
import type { Logger } from "pino";
import { EndpointPool } from "../../datapath/endpoint-pool.js";
import { MembraneError } from "../../errors.js";
import type { Store, TxnRequest } from "../../store/store.js";
import { KEYS, type EndpointRecordV1 } from "../records.js";

/** The pool of `<netnsPrefix>ep<id>` namespaces; `used(id)`: an endpoint has that id. */
export function endpointPool(
  d: { readonly netnsPrefix: string; readonly poolSize?: number; readonly logger: Logger },
  used: (id: number) => boolean,
): EndpointPool {
  const onError = (e: unknown): void => d.logger.warn({ err: String(e) }, "endpoint namespace pool");
  return new EndpointPool({ netnsPrefix: d.netnsPrefix, size: d.poolSize, used, onError });
}

/**
 * Writes the endpoint's record with its address lease (Ipam.plan's `lease`: compare "absent" and put,
 * per address) in one store transaction. A lost race (another allocator took an address meanwhile)
 * writes nothing and fails the create.
 */
export async function writeRecord(
  store: Store,
  lease: TxnRequest,
  key: string,
  rec: EndpointRecordV1,
): Promise<void> {
  const r = await store.txn({
    compare: lease.compare,
    ops: [...lease.ops, { type: "put", key: KEYS.endpoints + key, value: JSON.stringify(rec) }],
  });
  if (!r.succeeded) {
    throw new MembraneError(
      "STORE_FAILED",
      `Cannot create endpoint ${key}: its address was taken by another allocator meanwhile`,
      { hint: "Retry the create: it picks a free address again." },
    );
  }
}
