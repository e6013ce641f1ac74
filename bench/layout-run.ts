/**
 * Running `nft` (and other tools) in a scratch namespace for the layout
 * benchmark, timed: wall time of the process, and its user (nft) and system
 * (kernel, nf_tables) CPU time from /usr/bin/time when it is installed.
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";

export interface Timed {
  ms: number;
  userMs: number;
  sysMs: number;
  stdout: string;
}

const TIME = "/usr/bin/time";
const hasTime = existsSync(TIME);

/** Runs argv inside netns `ns` (nsenter: no remount, unlike `ip netns exec`); throws on failure. */
export function runIn(ns: string, argv: readonly string[], input?: string): Timed {
  const wrapped = hasTime ? [TIME, "-f", "MBLTIME %U %S", ...argv] : [...argv];
  const t0 = performance.now();
  const r = spawnSync("nsenter", [`--net=/run/netns/${ns}`, "--", ...wrapped], {
    encoding: "utf8",
    maxBuffer: 1 << 30,
    ...(input !== undefined ? { input } : {}),
  });
  const ms = performance.now() - t0;
  const lines = (r.stderr ?? "").trim().split("\n");
  const last = lines[lines.length - 1] ?? "";
  const m = /^MBLTIME ([\d.]+) ([\d.]+)$/.exec(last);
  const err = (m ? lines.slice(0, -1) : lines).join("\n").trim();
  if (r.status !== 0 || r.error)
    throw new Error(`${argv.join(" ")} in ${ns} failed (${r.status}): ${err || String(r.error)}`);
  return {
    ms,
    userMs: m ? Number(m[1]) * 1000 : NaN,
    sysMs: m ? Number(m[2]) * 1000 : NaN,
    stdout: r.stdout,
  };
}

/** `nft -f -` with a script. */
export const nftScript = (ns: string, script: string): Timed => runIn(ns, ["nft", "-f", "-"], script);
/** `nft -j <args>`. */
export const nftJson = (ns: string, args: readonly string[]): Timed => runIn(ns, ["nft", "-j", ...args]);

export const median = (xs: readonly number[]): number => {
  const s = [...xs].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};
