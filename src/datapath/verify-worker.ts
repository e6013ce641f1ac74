/**
 * The worker thread of verify-thread.ts: reads the table with `nft -j list
 * table` and compares it with the view it was sent (kernel-view.ts), so that
 * neither the spawn, nor the JSON parse of a table of 50,000 elements, nor the
 * comparison runs on the agent's event loop.
 *
 *   {id, table, netns?, view} --> readView (hosts kept here: WorkerHosts) --> nft -j -n list table
 *      inet <table> --> compareView
 *   <-- {id, diff: string | null} | {id, error}
 *   {stop} --> the nft running now is killed and reaped --> <-- {stopped}
 *   {cancel: id} (an apply overtook that check: its answer is of no use) --> its nft is killed
 *      and reaped, no parse, no compare --> <-- {id, cancelled: true}
 *
 * Background work: the thread lowers its own priority to nice 19 when it starts,
 * and the `nft` it spawns inherits it, so that on a busy machine the check gives
 * way to the agent's loop, the set-element writer and the kernel's commits. The
 * `nft` must be reaped by this thread's loop (a thread terminated while its child
 * runs leaves a zombie in the agent): stop first, terminate after {stopped}.
 *
 * Does nothing unless started as a worker (nothing at import time otherwise).
 */
import { setPriority } from "node:os";
import { parentPort } from "node:worker_threads";
import { nftListJson } from "./exec.js";
import { compareView, readView, WorkerHosts, type KernelView } from "./kernel-view.js";

export interface VerifyRequest {
  readonly id: number;
  readonly table: string;
  readonly netns?: string;
  readonly view: KernelView;
}

/** Kill the running read and answer {stopped} once its process is reaped. */
export interface VerifyStop {
  readonly stop: true;
}

/** Kill request `cancel`'s read (or skip it, not started yet) and answer {id, cancelled} once reaped. */
export interface VerifyCancel {
  readonly cancel: number;
}

export type VerifyAnswer =
  | { readonly id: number; readonly diff: string | null }
  | { readonly id: number; readonly error: string }
  | { readonly id: number; readonly cancelled: true }
  | { readonly stopped: true }
  /** An `nft` of this thread runs (true) or has been reaped (false): a stop waits only then. */
  | { readonly reading: boolean };

/** The niceness of the check (the lowest priority); Linux applies it to the calling thread only. */
export const VERIFY_NICE = 19;

const port = parentPort;
if (port) {
  try {
    setPriority(VERIFY_NICE);
  } catch {
    // Not allowed here: the check runs at the agent's priority.
  }
  const stopper = new AbortController();
  const hosts = new WorkerHosts();
  const reads = new Set<Promise<unknown>>();
  /** Each read's own stopper (a cancel), by request id. */
  const cancels = new Map<number, AbortController>();
  port.on("message", (m: VerifyRequest | VerifyStop | VerifyCancel) => {
    if ("stop" in m) {
      stopper.abort();
      void Promise.allSettled([...reads]).then(() => port.postMessage({ stopped: true }));
      return;
    }
    if ("cancel" in m) {
      cancels.get(m.cancel)?.abort();
      return;
    }
    const mine = new AbortController();
    cancels.set(m.id, mine);
    const read = (async (): Promise<VerifyAnswer> => {
      try {
        // The hosts of the view are taken in first, cancelled or not (the agent counts on it).
        const want = readView(m.view, hosts);
        if (mine.signal.aborted) return { id: m.id, cancelled: true };
        const opts = m.netns === undefined ? {} : { netns: m.netns };
        port.postMessage({ reading: true });
        const signal = AbortSignal.any([stopper.signal, mine.signal]);
        const doc = await nftListJson("inet", m.table, { ...opts, signal }).finally(() =>
          port.postMessage({ reading: false }),
        );
        return { id: m.id, diff: compareView(want, doc, hosts) ?? null };
      } catch (e) {
        if (mine.signal.aborted && !stopper.signal.aborted) return { id: m.id, cancelled: true };
        return { id: m.id, error: (e instanceof Error ? e.message : String(e)).slice(0, 2000) };
      } finally {
        cancels.delete(m.id);
      }
    })();
    reads.add(read);
    void read.then((a) => {
      reads.delete(read);
      port.postMessage(a);
    });
  });
}
