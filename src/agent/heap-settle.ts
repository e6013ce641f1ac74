/**
 * The agent's heap after start(), settled before its API answers.
 *
 *   start(): store read, engine, compile of every endpoint, the kernel adopted
 *     --> the young generation is full of what the agent keeps (its state)
 *     --> settleHeap(): two young-generation collections now: what lives on is promoted
 *     --> API serves: the first applies do not pay for copying the start's state
 *
 * Without it, the first scavenges after a restart copy and promote the state
 * start() built, inside the user's first requests (measured at 250 and 1,000
 * endpoints with 50,000 remote entries: a 40-70 ms scavenge in the first apply
 * after the restart, against 5-20 ms later). Two collections: an object is
 * promoted when it survives its second one.
 *
 * V8's `gc` is reached through a fresh context after --expose-gc (it is not put
 * on this realm's global object); when that is not possible, nothing is done.
 */
import v8 from "node:v8";
import vm from "node:vm";

type GcFn = (o?: { type?: "minor" | "major" }) => void;
let gcFn: GcFn | null | undefined;

function gc(): GcFn | null {
  if (gcFn !== undefined) return gcFn;
  try {
    v8.setFlagsFromString("--expose-gc");
    const f: unknown = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
    gcFn = typeof f === "function" ? (f as GcFn) : null;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/** Promotes what start() built (two young-generation collections); returns false when V8's gc is unavailable. */
export function settleHeap(): boolean {
  const f = gc();
  if (!f) return false;
  f({ type: "minor" });
  f({ type: "minor" });
  return true;
}
