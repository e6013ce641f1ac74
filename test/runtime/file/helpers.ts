/**
 * Helpers for the fanotify denial tests: a scratch directory and namespaces
 * named `fa<hex>-<tag>` (removed in `finally`), commands run in a namespace
 * with their stdout, stderr and exit code.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { defaultResponderPath } from "../../../src/runtime/file/responder.js";

export function fanotifySkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (fanotify permission events, network namespaces)";
  for (const bin of ["ip", "setpriv", "pgrep"])
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0)
      return `needs ${bin} (scripts/install-system-deps.sh)`;
  if (!existsSync(defaultResponderPath())) return "needs dist/bin/membrane-fanotify (npm run build)";
  return undefined;
}

export function faPrefix(): string {
  return "fa" + randomBytes(3).toString("hex");
}

export interface Ran {
  readonly out: string;
  readonly err: string;
  readonly code: number | null;
}

/** `sh -c script args...` in a namespace (undefined: the host). */
export function sh(netns: string | undefined, script: string, ...args: string[]): Promise<Ran> {
  const cmd = ["sh", "-c", script, "sh", ...args];
  const argv = netns === undefined ? cmd : ["ip", "netns", "exec", netns, ...cmd];
  return new Promise((resolve, reject) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    c.stdout.setEncoding("latin1").on("data", (d: string) => (out += d));
    c.stderr.setEncoding("latin1").on("data", (d: string) => (err += d));
    c.once("error", reject);
    c.once("close", (code) => resolve({ out, err, code }));
  });
}

/** The fanotify responders that are children of `pid`. */
export function respondersOf(pid: number): number[] {
  const r = spawnSync("pgrep", ["-P", String(pid), "-f", "bin/membrane-fanotify"], { encoding: "utf8" });
  return r.stdout.split("\n").filter(Boolean).map(Number);
}

export const DENY_FILE = (
  hook: string,
  op: string,
  paths: string[],
  name = "deny-secret",
): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${name}}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
  - call: ${hook}
    args: [{index: 0, type: file}]
    selectors:
    - matchArgs: [{index: 0, operator: ${op}, values: [${paths.join(", ")}]}]
      matchActions: [{action: Override, argError: -1}]
`;
