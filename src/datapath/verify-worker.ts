/**
 * The worker thread of verify-thread.ts: reads the table with `nft -j list
 * table` and compares it with the view it was sent (kernel-view.ts), so that
 * neither the spawn, nor the JSON parse of a table of 50,000 elements, nor the
 * comparison runs on the agent's event loop.
 *
 *   {id, table, netns?, view} --> nft -j -n list table inet <table> --> compareView
 *   <-- {id, diff: string | null} | {id, error}
 *
 * Does nothing unless started as a worker (nothing at import time otherwise).
 */
import { parentPort } from "node:worker_threads";
import { nftListJson } from "./exec.js";
import { compareView, type KernelView } from "./kernel-view.js";

export interface VerifyRequest {
  readonly id: number;
  readonly table: string;
  readonly netns?: string;
  readonly view: KernelView;
}

export type VerifyAnswer =
  { readonly id: number; readonly diff: string | null } | { readonly id: number; readonly error: string };

const port = parentPort;
if (port) {
  port.on("message", (m: VerifyRequest) => {
    void (async (): Promise<VerifyAnswer> => {
      try {
        const doc = await nftListJson("inet", m.table, m.netns === undefined ? {} : { netns: m.netns });
        return { id: m.id, diff: compareView(m.view, doc) ?? null };
      } catch (e) {
        return { id: m.id, error: (e instanceof Error ? e.message : String(e)).slice(0, 2000) };
      }
    })().then((a) => port.postMessage(a));
  });
}
