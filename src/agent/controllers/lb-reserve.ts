/**
 * Services written with their reservations (lb/reservations.ts), atomically across the cluster:
 *
 *   read the store (lb/services/, lb/alloc/, lb/gateways/) ──allocate every Service of the file from it──▶
 *   txn( compare: each new reservation absent, each kept one and each record unchanged since read,
 *                 nothing under lb/gateways/ written since read (when it takes a new address);
 *        ops: the records, the new reservations, the released ones deleted )
 *        ──a compare failed (another node wrote first)──▶ read again, allocate again (bounded)
 *
 * A refusal (an explicit address another Service holds, a full pool) throws before anything is
 * written. A file needing more than STORE_TXN_OPS operations goes in several transactions; if
 * a later one is refused after a retry, the written ones are undone (put back as read).
 */
import type { Logger } from "pino";
import { MembraneError } from "../../errors.js";
import { allocate } from "../../lb/allocate.js";
import { readServiceRecord } from "../../lb/record.js";
import {
  ALLOC_KEY,
  GATEWAY_KEY,
  gatewayHolds,
  inUseOf,
  IP_KEY,
  markUsed,
  reservationKeys,
} from "../../lb/reservations.js";
import type { LbConfig, LbService } from "../../lb/types.js";
import type { Store, TxnCompare, TxnOp } from "../../store/store.js";
import { STORE_TXN_OPS } from "./identities.js";

export const SVC_KEY = "lb/services/";
/** Rounds of read-allocate-write before giving up (each lost only to another node's write). */
const ATTEMPTS = 10;

export interface ServiceWrite {
  /** "namespace/name" -> the service as written (undefined: deleted or absent). */
  readonly now: LbService | undefined;
  readonly status: "created" | "configured" | "unchanged" | "deleted";
}

interface Seen {
  readonly value: string;
  readonly modRevision: number;
}

interface View {
  readonly services: Map<string, Seen & { readonly svc: LbService }>;
  readonly alloc: Map<string, Seen>;
  /** The Gateways' addresses (cluster mode, lb/reservations.ts) as `[lb/alloc/ip/<address>, holder]`. */
  readonly gateways: [string, string][];
  /** The revision lb/gateways/ was read at: a Gateway's reservation after it fails the transaction. */
  readonly gatewaysRevision: number;
}

interface Plan {
  readonly id: string;
  readonly compare: TxnCompare[];
  readonly ops: TxnOp[];
  readonly result: ServiceWrite;
}

async function readView(store: Store, logger: Logger): Promise<View> {
  const services = new Map<string, Seen & { svc: LbService }>();
  for (const kv of (await store.list(SVC_KEY)).kvs) {
    const id = kv.key.slice(SVC_KEY.length);
    try {
      services.set(id, {
        value: kv.value,
        modRevision: kv.modRevision,
        svc: readServiceRecord(kv.value, id),
      });
    } catch (e) {
      logger.error({ key: kv.key, err: String(e) }, "stored service cannot be read; skipped");
    }
  }
  const alloc = new Map<string, Seen>();
  for (const kv of (await store.list(ALLOC_KEY)).kvs) alloc.set(kv.key, kv);
  const gw = await store.list(GATEWAY_KEY);
  return { services, alloc, gateways: gatewayHolds(gw.kvs), gatewaysRevision: gw.revision };
}

/** The compares and ops that make the store hold `next` for `id` (undefined: delete). */
function plan(id: string, next: LbService | undefined, view: View): Plan {
  const key = SVC_KEY + id;
  const prev = view.services.get(id);
  const compare: TxnCompare[] = [{ key, modRevision: prev?.modRevision ?? 0 }];
  const ops: TxnOp[] = [];
  const want = new Set(next ? reservationKeys(next) : []);
  for (const k of want) {
    const held = view.alloc.get(k);
    compare.push({ key: k, modRevision: held?.value === id ? held.modRevision : 0 });
    if (held?.value !== id) ops.push({ type: "put", key: k, value: id });
  }
  for (const [k, held] of view.alloc)
    if (held.value === id && !want.has(k)) {
      compare.push({ key: k, modRevision: held.modRevision });
      ops.push({ type: "delete", key: k });
    }
  // A new address: no Gateway may have taken it since the read (their keys are apart, per node).
  if (ops.some((op) => op.type === "put" && op.key.startsWith(IP_KEY)))
    compare.push({ prefix: GATEWAY_KEY, unchangedSince: view.gatewaysRevision });
  const value = next && JSON.stringify(next);
  if (value !== prev?.value)
    ops.push(value === undefined ? { type: "delete", key } : { type: "put", key, value });
  const status = !next ? (prev ? "deleted" : "unchanged") : !prev ? "created" : value === prev.value ? "unchanged" : "configured"; // prettier-ignore
  // Nothing to write: nothing to guard either (a compare would only make a race more likely).
  return { id, compare: ops.length > 0 ? compare : [], ops, result: { now: next, status } };
}

/** Plans into transactions of at most STORE_TXN_OPS compares and ops (one plan never split). */
function chunks(plans: readonly Plan[]): Plan[][] {
  const out: Plan[][] = [];
  let cur: Plan[] = [];
  let size = 0;
  for (const p of plans) {
    const n = Math.max(p.compare.length, p.ops.length);
    if (cur.length > 0 && size + n > STORE_TXN_OPS) {
      out.push(cur);
      cur = [];
      size = 0;
    }
    cur.push(p);
    size += n;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

export interface WriteServices {
  readonly store: Store;
  readonly logger: Logger;
  readonly cfg: LbConfig;
  /** "apply": allocate and write these Services; "delete": remove them and their reservations. */
  readonly op: "apply" | "delete";
  readonly services: readonly LbService[];
}

/** Allocates and writes (or deletes) the Services, all or none; "namespace/name" -> what was written. */
export async function writeServices(w: WriteServices): Promise<Map<string, ServiceWrite>> {
  const undo: { compare: TxnCompare[]; ops: TxnOp[] }[] = [];
  const done = new Map<string, ServiceWrite>();
  try {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const view = await readView(w.store, w.logger);
      const used = inUseOf([...view.services.values()].map((v) => v.svc), [...[...view.alloc].map(([k, v]): [string, string] => [k, v.value]), ...view.gateways]); // prettier-ignore
      const plans: Plan[] = [];
      for (const s of w.services) {
        const id = `${s.namespace}/${s.name}`;
        if (done.has(id)) continue;
        const next = w.op === "apply" ? allocate(s, view.services.get(id)?.svc, used, w.cfg) : undefined;
        if (next) markUsed(used, next);
        plans.push(plan(id, next, view));
      }
      let lost = false;
      for (const c of chunks(plans)) {
        const ops = c.flatMap((p) => p.ops);
        const compare = c.flatMap((p) => p.compare).filter((x, i, all) => x.prefix === undefined || all.findIndex((y) => y.prefix === x.prefix) === i); // prettier-ignore
        if (ops.length > 0 && !(await w.store.txn({ compare, ops })).succeeded) {
          lost = true; // another node wrote one of these keys since the read: read again
          break;
        }
        if (ops.length > 0) undo.push(inverse(ops, view));
        for (const p of c) done.set(p.id, p.result);
      }
      if (!lost) return done;
    }
    throw new MembraneError(
      "STORE_FAILED",
      `Cannot write ${w.services.length} Service(s): other nodes changed the same services or addresses ${ATTEMPTS} times in a row`,
      { hint: "Apply the file again." },
    );
  } catch (e) {
    for (const u of undo.reverse())
      await w.store.txn(u).catch((err: unknown) => w.logger.error({ err: String(err) }, "services partly written: undo failed")); // prettier-ignore
    throw e;
  }
}

/** What puts back the keys `ops` change, as `view` read them. */
function inverse(ops: readonly TxnOp[], view: View): { compare: TxnCompare[]; ops: TxnOp[] } {
  const back = ops.map((op): TxnOp => {
    const old = op.key.startsWith(SVC_KEY) ? view.services.get(op.key.slice(SVC_KEY.length))?.value : view.alloc.get(op.key)?.value; // prettier-ignore
    return old !== undefined ? { type: "put", key: op.key, value: old } : { type: "delete", key: op.key };
  });
  return { compare: [], ops: back };
}
