/**
 * Policy files from the API are parsed in a worker thread first, so that one
 * request's parsing never blocks the agent's event loop (its API, its DNS
 * proxy feed, its reconcilers).
 *
 *   POST/DELETE /v1/policies --PolicyChecker--> Worker(parsePolicies) --store form--> decodePolicy
 *                                                 --> agent.applyPolicyResources / deletePolicyRefs
 *                                                 (+ the parser's warnings, in the answer)
 *                                              --MembraneError--> 400, nothing changed
 *
 * The worker sends each policy back in its store form (policy-store.ts), so
 * the main thread only decodes JSON (linear, milliseconds) and never runs
 * the YAML parser on API input.
 *
 * Why: the `yaml` library needs seconds for a large file even within the
 * bounds of policy/api/limits.ts (about 2-4 s per MiB measured on a busy
 * 2-core machine, far above the ~100 ms an API call may hold the loop). A
 * file that is invalid or crosses a limit is refused here and never parsed
 * on the main thread. The worker's heap is capped; at most MAX_RUNNING run at
 * once and the rest wait their turn.
 */
import { Worker } from "node:worker_threads";
import { MembraneError } from "../errors.js";
import type { PolicyWarning } from "../policy/api/index.js";
import type { PolicyResource } from "../policy/types.js";
import { errorFromBody } from "./api/wire.js";
import { decodePolicy } from "./policy-store.js";

const MAX_RUNNING = 2;
/** Heap of one worker: the worst file within LIMITS measured about 350 MB. */
const WORKER_HEAP_MB = 768;

export class PolicyChecker {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  /** Resolves with the policies of `text` and the parser's warnings; rejects with its MembraneError. */
  async parse(
    text: string,
    file: string,
    meshAuth: boolean,
  ): Promise<{ resources: PolicyResource[]; warnings: PolicyWarning[] }> {
    if (this.running >= MAX_RUNNING) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      const { values, warnings } = await inWorker(text, file, meshAuth);
      const resources = values.map((v) => {
        const d = decodePolicy(v);
        if (!d) throw failed(file, "the parser sent back a policy in an unknown form");
        return d.res;
      });
      return { resources, warnings };
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

interface Parsed {
  readonly values: string[];
  readonly warnings: PolicyWarning[];
}

function inWorker(text: string, file: string, meshAuth: boolean): Promise<Parsed> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const worker = new Worker(new URL("./policy-check-worker.js", import.meta.url), {
      workerData: { text, file, meshAuth },
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    const settle = (f: () => void): void => {
      if (settled) return;
      settled = true;
      f();
      void worker.terminate();
    };
    type Answer = {
      ok: boolean;
      values?: string[];
      warnings?: PolicyWarning[];
      error?: unknown;
      internal?: string;
    };
    worker.once("message", (m: Answer) => {
      if (m.ok) return settle(() => resolve({ values: m.values ?? [], warnings: m.warnings ?? [] }));
      const err = m.error === undefined ? undefined : errorFromBody(m.error);
      settle(() => reject(err ?? failed(file, m.internal ?? "unknown error")));
    });
    worker.once("error", (e) => settle(() => reject(failed(file, e.message, e))));
    worker.once("exit", (code) => settle(() => reject(failed(file, `the parser exited with code ${code}`))));
  });
}

function failed(file: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("API_FAILED", `Cannot parse ${file}: ${why}`, {
    ...(cause !== undefined ? { cause } : {}),
    hint: "the agent's log has the details; a file within the documented limits should parse",
  });
}
