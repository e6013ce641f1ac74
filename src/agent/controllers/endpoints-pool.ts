/**
 * The endpoints controller's helpers for a create: the pool of namespaces
 * made ahead of time (datapath/endpoint-pool.ts), its failures logged, and
 * the wait for the record's write and the policy's enforcement together.
 */
import type { Logger } from "pino";
import { EndpointPool } from "../../datapath/endpoint-pool.js";

/** The pool of `<netnsPrefix>ep<id>` namespaces; `used(id)`: an endpoint has that id. */
export function endpointPool(
  d: { readonly netnsPrefix: string; readonly poolSize?: number; readonly logger: Logger },
  used: (id: number) => boolean,
): EndpointPool {
  const onError = (e: unknown): void => d.logger.warn({ err: String(e) }, "endpoint namespace pool");
  return new EndpointPool({ netnsPrefix: d.netnsPrefix, size: d.poolSize, used, onError });
}

/** Waits for both; throws the first one's error if either failed (the caller undoes both). */
export async function settleBoth(a: Promise<unknown>, b: Promise<unknown>): Promise<void> {
  for (const r of await Promise.allSettled([a, b])) if (r.status === "rejected") throw r.reason;
}
