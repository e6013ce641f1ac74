/**
 * The periodic check's reader off the event loop: one worker thread per
 * Reconciler (started at the first verify, kept, stopped with it) reads the
 * kernel's table and compares it with a view of what was applied.
 *
 *   compare(view) --postMessage--> verify-worker.ts (nft -j list table, JSON.parse, compareView)
 *                 <--undefined (the kernel holds the view) | the first difference--
 *
 * A worker that fails or exits rejects what waits on it (the Reconciler's
 * verify fails, the agent logs it and checks again at the next period); the
 * next compare starts a new one. stop() has the worker kill and reap the `nft`
 * it runs before the thread is terminated (else a zombie stays in the agent).
 * cancel() does the same for the reads waited on now, and keeps the worker: an
 * apply that overtook a check makes its answer useless (the Reconciler would drop
 * it), so its read stops costing CPU (an `nft -j list` of 1,000 endpoints and
 * 50,000 hosts is seconds of it) while the apply runs; compare() answers CANCELLED.
 */
import { Worker } from "node:worker_threads";
import { fileURLToPath } from "node:url";
import { MembraneError } from "../errors.js";
import type { KernelView } from "./kernel-view.js";
import type { VerifyAnswer, VerifyCancel, VerifyRequest, VerifyStop } from "./verify-worker.js";

/** compare()'s answer for a read cancelled by cancel(). */
export const CANCELLED: unique symbol = Symbol("cancelled");

/** Safety net for a worker that does not answer a stop (it is terminated anyway). */
const STOP_SAFETY_MS = 10_000;

interface Waiter {
  resolve: (diff: string | undefined | typeof CANCELLED) => void;
  reject: (e: unknown) => void;
}

export class VerifyThread {
  private worker: Worker | undefined;
  private nextId = 1;
  private readonly waiters = new Map<number, Waiter>();
  private stopped = false;
  /** Counts the workers started: a worker keeps the hosts of the views it was sent. */
  private gen = 0;
  /** The worker's `nft` runs now (the worker says so): only then does a stop wait for it. */
  private reading = false;

  constructor(
    private readonly table: string,
    private readonly netns: string | undefined,
  ) {}

  /**
   * The worker that the next compare goes to (started now if none runs): a view with host
   * changes only (kernel-view.ts) is for the worker that holds the earlier views' hosts.
   */
  generation(): number {
    if (!this.stopped) this.worker ??= this.start();
    return this.gen;
  }

  /**
   * The first difference between the kernel's table and `view`, or undefined when there is
   * none. `generation` (from generation()): the view is for that worker; rejected if another runs.
   */
  compare(view: KernelView, generation?: number): Promise<string | undefined | typeof CANCELLED> {
    if (this.stopped) return Promise.reject(fail("stopping"));
    if (generation !== undefined && (generation !== this.gen || !this.worker))
      return Promise.reject(fail("the worker was restarted (the next check sends every host)"));
    const w = (this.worker ??= this.start());
    const id = this.nextId++;
    const req: VerifyRequest = {
      id,
      table: this.table,
      view,
      ...(this.netns === undefined ? {} : { netns: this.netns }),
    };
    return new Promise((resolve, reject) => {
      this.waiters.set(id, { resolve, reject });
      // Held while a compare waits on it (a caller awaits the answer), let go when idle.
      w.ref();
      this.reading = true; // from now until the worker says its nft was reaped
      w.postMessage(req);
    });
  }

  /** Has the worker kill (and reap) the reads of every compare waiting now; they answer CANCELLED. */
  cancel(): void {
    const w = this.worker;
    if (!w) return;
    for (const id of this.waiters.keys()) w.postMessage({ cancel: id } satisfies VerifyCancel);
  }

  /** Fails what waits, has the worker kill and reap its `nft`, then ends the thread. */
  async stop(): Promise<void> {
    this.stopped = true;
    const w = this.worker;
    this.worker = undefined;
    this.failAll("stopping");
    if (!w) return;
    // No nft running: nothing to reap, the thread ends now (it may be busy parsing at nice 19).
    if (!this.reading) {
      await w.terminate();
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      w.on("message", (a: VerifyAnswer) => "stopped" in a && resolve());
      w.on("exit", () => resolve());
      w.on("error", () => resolve());
      timer = setTimeout(resolve, STOP_SAFETY_MS);
      w.ref();
      w.postMessage({ stop: true } satisfies VerifyStop);
    });
    clearTimeout(timer);
    await w.terminate();
  }

  private start(): Worker {
    this.gen++;
    this.reading = false;
    // No execArgv of the parent: the worker needs none, and some refuse a worker (--input-type).
    const w = new Worker(fileURLToPath(new URL("./verify-worker.js", import.meta.url)), { execArgv: [] });
    w.on("message", (a: VerifyAnswer) => {
      if ("reading" in a) this.reading = a.reading;
      if ("stopped" in a || "reading" in a) return;
      const waiter = this.waiters.get(a.id);
      if (!waiter) return;
      this.waiters.delete(a.id);
      if (this.waiters.size === 0) w.unref();
      if ("error" in a) waiter.reject(fail(a.error));
      else if ("cancelled" in a) waiter.resolve(CANCELLED);
      else waiter.resolve(a.diff ?? undefined);
    });
    const gone = (why: string): void => {
      if (this.worker === w) this.worker = undefined;
      this.failAll(why);
    };
    w.on("error", (e) => gone(`the worker failed: ${e.message}`));
    w.on("exit", (code) => gone(`the worker exited (${code})`));
    // An idle check never keeps the agent (or a test) alive. After the listeners: a "message"
    // listener added later refs the worker's port again.
    w.unref();
    return w;
  }

  private failAll(why: string): void {
    for (const [id, waiter] of this.waiters) {
      this.waiters.delete(id);
      waiter.reject(fail(why));
    }
  }
}

function fail(why: string): MembraneError {
  return new MembraneError("NFT_APPLY_FAILED", `Cannot check the nftables table in the background: ${why}`, {
    hint: "The agent checks again at the next resync; `membrane datapath diff` compares on demand.",
  });
}
