/**
 * Request checks shared by the store backends, so that both refuse the same
 * things with the same words (etcd's own limits are the model).
 */
import { MembraneError } from "../errors.js";
import { compareKey, type TxnRequest } from "./store.js";

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
  for (const c of req.compare) {
    validateKey(compareKey(c));
    if (c.prefix !== undefined && !(Number.isSafeInteger(c.unchangedSince) && c.unchangedSince >= 0))
      throw new MembraneError(
        "STORE_FAILED",
        `Cannot run a store transaction: the compare on prefix ${JSON.stringify(c.prefix)} needs a revision (a whole number >= 0)`,
      );
  }
}
