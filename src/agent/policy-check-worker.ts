/**
 * Worker-thread entry of policy-check.ts: parses policy files, one message at
 * a time, and posts back for each either `{ok: true, values, warnings}` (each
 * policy in its store form, policy-store.ts; the parser's warnings, already
 * capped by it) or the MembraneError as an API error body. The thread lives on
 * between files (policy-check.ts keeps it warm: loading the parser and its first
 * runs cost ~280 ms of CPU, far more than parsing a usual file).
 * (A worker entry runs when loaded; nothing imports this file.)
 */
import { parentPort } from "node:worker_threads";
import { MembraneError } from "../errors.js";
import { parsePolicies, type PolicyWarning } from "../policy/api/index.js";
import { errorBody } from "./api/wire.js";
import { encodePolicy } from "./policy-store.js";

interface Job {
  readonly id: number;
  readonly text: string;
  readonly file: string;
  readonly meshAuth: boolean;
}

parentPort?.on("message", (job: Job) => {
  try {
    const warnings: PolicyWarning[] = [];
    const values = parsePolicies(job.text, job.file, {
      meshAuth: job.meshAuth,
      onWarning: (w) => warnings.push(w),
    }).map((r) => encodePolicy(r).value);
    parentPort?.postMessage({ id: job.id, ok: true, values, warnings });
  } catch (e) {
    parentPort?.postMessage(
      e instanceof MembraneError
        ? { id: job.id, ok: false, error: errorBody(e) }
        : { id: job.id, ok: false, internal: String(e) },
    );
  }
});
