/**
 * Which processes a piece of code spawns: the endpoint tests count them (a pooled create spawns
 * none, a delete one). Wraps child_process.spawn for the duration of `fn` only.
 */
import cp from "node:child_process";
import { syncBuiltinESMExports } from "node:module";

/** The argv of every process spawned from Node while `fn` runs. */
export async function spawned(fn: () => Promise<unknown>): Promise<string[][]> {
  const seen: string[][] = [];
  const orig = cp.spawn;
  cp.spawn = ((cmd: string, args: readonly string[], ...rest: unknown[]) => {
    seen.push([cmd, ...args]);
    return (orig as (...a: unknown[]) => cp.ChildProcess)(cmd, args, ...rest);
  }) as typeof cp.spawn;
  syncBuiltinESMExports();
  try {
    await fn();
  } finally {
    cp.spawn = orig;
    syncBuiltinESMExports();
  }
  return seen;
}
