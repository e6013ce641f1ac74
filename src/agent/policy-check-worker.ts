/**
 * Worker-thread entry of policy-check.ts: parses one policy file and posts
 * back either `{ok: true, values, warnings}` (each policy in its store form,
 * policy-store.ts; the parser's warnings, already capped by it) or the
 * MembraneError as an API error body.
 * (A worker entry runs when loaded; nothing imports this file.)
 */
import { parentPort, workerData } from "node:worker_threads";
import { MembraneError } from "../errors.js";
import { parsePolicies, type PolicyWarning } from "../policy/api/index.js";
import { errorBody } from "./api/wire.js";
import { encodePolicy } from "./policy-store.js";

interface Job {
  readonly text: string;
  readonly file: string;
  readonly meshAuth: boolean;
}

const job = workerData as Job;
try {
  const warnings: PolicyWarning[] = [];
  const values = parsePolicies(job.text, job.file, {
    meshAuth: job.meshAuth,
    onWarning: (w) => warnings.push(w),
  }).map((r) => encodePolicy(r).value);
  parentPort?.postMessage({ ok: true, values, warnings });
} catch (e) {
  parentPort?.postMessage(
    e instanceof MembraneError ? { ok: false, error: errorBody(e) } : { ok: false, internal: String(e) },
  );
}
