/**
 * Request checks shared by the store backends, so that both refuse the same
 * things with the same words (etcd's own limits are the model).
 */
import { MembraneError } from "../errors.js";
import type { TxnRequest } from "./store.js";

export function validateKey(key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new MembraneError("STORE_FAILED", "Cannot write to the store: a key must be a non-empty string");
  }
}

export function validateTxn(req: TxnRequest): void {
  const seen = new Set<string>();
  for (const op of req.ops) {
    validateKey(op.key);
    if (op.type === "put" && typeof op.value !== "string") {
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot write ${JSON.stringify(op.key)} to the store: the value must be a string`,
      );
    }
    if (seen.has(op.key)) {
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot run a store transaction: it touches ${JSON.stringify(op.key)} twice`,
      );
    }
    seen.add(op.key);
  }
  for (const c of req.compare) validateKey(c.key);
}
