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
 * once and the rest wait their turn. Workers are kept between files (and one is
 * warmed when the API is made, warm()): starting one and loading the parser costs
 * ~280 ms of CPU, which every apply through the API paid before. A worker whose
 * parse failed other than by the file's own error is ended, never reused.
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

/** What the warm-up parses: a small policy that takes the parser through its usual paths. */
const WARM_UP = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: warm-up, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: b}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
`;

export class PolicyChecker {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Workers that answered their last file and wait for the next (at most MAX_RUNNING). */
  private readonly idle: Worker[] = [];
  /** Worker threads started so far (a warm one is reused: tests, diagnostics). */
  workersStarted = 0;

  /**
   * Starts one worker and loads the parser in it (a tiny file), so that the first
   * file a user applies after the agent started does not pay for it. Idle work:
   * nothing waits for it; a parse that comes meanwhile queues behind it in that worker.
   */
  warm(): void {
    if (this.idle.length > 0) return;
    const w = this.start();
    this.idle.push(w);
    this.hold(w);
    void ask(w, WARM_UP, "warm-up.yaml", false).then(
      () => this.release(w),
      () => (this.release(w), this.drop(w)),
    );
  }

  /** Resolves with the policies of `text` and the parser's warnings; rejects with its MembraneError. */
  async parse(
    text: string,
    file: string,
    meshAuth: boolean,
  ): Promise<{ resources: PolicyResource[]; warnings: PolicyWarning[] }> {
    if (this.running >= MAX_RUNNING) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    const w = this.idle.pop() ?? this.start();
    this.hold(w); // while a request waits on it
    let healthy = false;
    try {
      const { values, warnings } = await ask(w, text, file, meshAuth).then(
        (r) => {
          healthy = true;
          return r;
        },
        (e: unknown) => {
          // The file's own error (a MembraneError the parser raised) leaves the worker sound.
          healthy = e instanceof MembraneError && !(e as { internal?: boolean }).internal;
          throw e;
        },
      );
      const resources = values.map((v) => {
        const d = decodePolicy(v);
        if (!d) throw failed(file, "the parser sent back a policy in an unknown form");
        return d.res;
      });
      return { resources, warnings };
    } finally {
      this.release(w); // an idle worker never keeps the agent (or a test) alive
      if (healthy && this.idle.length < MAX_RUNNING) this.idle.push(w);
      else this.drop(w);
      this.running--;
      this.waiting.shift()?.();
    }
  }

  /** Requests waiting on each worker: it holds the event loop while any does (the warm-up counts). */
  private readonly pending = new Map<Worker, number>();

  private hold(w: Worker): void {
    this.pending.set(w, (this.pending.get(w) ?? 0) + 1);
    w.ref();
  }

  private release(w: Worker): void {
    const n = (this.pending.get(w) ?? 1) - 1;
    if (n > 0) return void this.pending.set(w, n);
    this.pending.delete(w);
    w.unref();
  }

  private start(): Worker {
    this.workersStarted++;
    const w = new Worker(new URL("./policy-check-worker.js", import.meta.url), {
      resourceLimits: { maxOldGenerationSizeMb: WORKER_HEAP_MB },
      stdout: true,
      stderr: true,
    });
    // A worker that fails or exits while idle is forgotten (the next parse starts another).
    w.on("error", () => this.drop(w));
    w.on("exit", () => this.drop(w));
    return w;
  }

  private drop(w: Worker): void {
    const i = this.idle.indexOf(w);
    if (i >= 0) this.idle.splice(i, 1);
    void w.terminate();
  }
}

interface Parsed {
  readonly values: string[];
  readonly warnings: PolicyWarning[];
}

let nextJob = 1;

/** One file through worker `w`: its answer, or the failure (internal ones marked `internal`). */
function ask(w: Worker, text: string, file: string, meshAuth: boolean): Promise<Parsed> {
  return new Promise((resolve, reject) => {
    type Answer = {
      id: number;
      ok: boolean;
      values?: string[];
      warnings?: PolicyWarning[];
      error?: unknown;
      internal?: string;
    };
    const internal = (e: MembraneError): MembraneError => Object.assign(e, { internal: true });
    const id = nextJob++;
    const onMessage = (m: Answer): void => {
      if (m.id !== id) return; // another file's answer (the warm-up's): answers come in order
      off();
      if (m.ok) return resolve({ values: m.values ?? [], warnings: m.warnings ?? [] });
      const err = m.error === undefined ? undefined : errorFromBody(m.error);
      reject(err ?? internal(failed(file, m.internal ?? "unknown error")));
    };
    const onError = (e: Error): void => {
      off();
      reject(internal(failed(file, e.message, e)));
    };
    const onExit = (code: number): void => {
      off();
      reject(internal(failed(file, `the parser exited with code ${code}`)));
    };
    const off = (): void => {
      w.off("message", onMessage);
      w.off("error", onError);
      w.off("exit", onExit);
    };
    w.on("message", onMessage);
    w.on("error", onError);
    w.on("exit", onExit);
    w.postMessage({ id, text, file, meshAuth });
  });
}

function failed(file: string, why: string, cause?: unknown): MembraneError {
  return new MembraneError("API_FAILED", `Cannot parse ${file}: ${why}`, {
    ...(cause !== undefined ? { cause } : {}),
    hint: "the agent's log has the details; a file within the documented limits should parse",
  });
}
