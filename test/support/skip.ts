/**
 * Why a test that needs root and some programs cannot run here (node:test's `skip` takes the
 * reason), or undefined when it can: one check for every such test instead of a copy in each.
 */
import { spawnSync } from "node:child_process";

/** `needs`: what root is for, as the reason says it; `install`: the apt-get hint for a missing program. */
export function rootWith(needs: string, bins: readonly string[], install?: string): string | undefined {
  if (process.getuid?.() !== 0) return `needs root (${needs})`;
  for (const bin of bins)
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0)
      return install === undefined ? `needs ${bin}` : `needs ${bin} (apt-get install ${install})`;
  return undefined;
}
