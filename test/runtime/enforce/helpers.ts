/**
 * Helpers for enforcement tests: scratch network namespaces named
 * `hrt<hex>-<tag>` (removed in `finally`), processes run in them, and
 * TracingPolicies from YAML.
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { statSync } from "node:fs";
import { LabelSet } from "../../../src/labels/label.js";
import type { EnforcerEndpoint } from "../../../src/runtime/enforce/enforcer.js";
import type { RuntimePolicyEvent } from "../../../src/runtime/enforce/events.js";
import { parseTracingPolicies } from "../../../src/runtime/policy/parse.js";
import type { TracingPolicy } from "../../../src/runtime/policy/types.js";

export function runtimeSkipReason(): string | undefined {
  if (process.getuid?.() !== 0) return "needs root (BPF programs, network namespaces)";
  for (const bin of ["ip", "bpftrace", "setpriv", "unshare"])
    if (spawnSync("sh", ["-c", `command -v ${bin}`]).status !== 0)
      return `needs ${bin} (scripts/install-system-deps.sh)`;
  return undefined;
}

export function prefix(): string {
  return "hrt" + randomBytes(3).toString("hex");
}

export class Netns {
  private constructor(readonly name: string) {}
  static add(name: string): Netns {
    const r = spawnSync("ip", ["netns", "add", name]);
    if (r.status !== 0) throw new Error(`ip netns add ${name}: ${String(r.stderr)}`);
    return new Netns(name);
  }
  get inode(): number {
    return statSync(`/run/netns/${this.name}`).ino;
  }
  endpoint(labels: Record<string, string>, namespace = "default"): EnforcerEndpoint {
    return {
      key: `${namespace}/${this.name}`,
      labels: LabelSet.fromMap({ ...labels, "io.kubernetes.pod.namespace": namespace }),
      netnsInode: this.inode,
    };
  }
  del(): void {
    spawnSync("ip", ["netns", "del", this.name]);
  }
}

export interface Ran {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The shell's view: 137 for a SIGKILLed command. */
  readonly stdout: string;
}

/**
 * `sh -c 'cat FILE; echo "rc=$?"'` in a namespace (or on the host): the
 * shell reports the exit status of cat as a shell sees it (137 = killed by SIGKILL).
 */
export function catIn(netns: string | undefined, file: string): Promise<{ out: string; rc: number }> {
  const cmd = ["sh", "-c", 'cat "$1"; echo "rc=$?"', "sh", file];
  const argv = netns === undefined ? cmd : ["ip", "netns", "exec", netns, ...cmd];
  return new Promise((resolve, reject) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.once("error", reject);
    c.once("close", () => {
      const m = /rc=(\d+)\n?$/.exec(out);
      resolve({ out: out.replace(/rc=\d+\n?$/, ""), rc: m ? Number(m[1]) : -1 });
    });
  });
}

export function policy(yaml: string): TracingPolicy {
  const [p] = parseTracingPolicies(yaml, "test.yaml");
  if (!p) throw new Error("no policy");
  return p;
}

export function collector(): {
  events: RuntimePolicyEvent[];
  sink: { onPolicyEvent(e: RuntimePolicyEvent): void };
} {
  const events: RuntimePolicyEvent[] = [];
  return { events, sink: { onPolicyEvent: (e) => events.push(e) } };
}

/** The shared wait (a named safety net, never a measure). */
export { until } from "../../support/until.js";

export const SHADOW_KILL = (extra = ""): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: no-shadow${extra}}
spec:
  podSelector: {matchLabels: {app: victim}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Sigkill}]
`;

/**
 * `sh -c SCRIPT` in a namespace, run by an outer shell that reports its exit
 * status as a shell sees it (137: SIGKILL), even when the inner shell itself
 * is the one killed (a redirection opens and writes from the shell).
 */
export function shIn(netns: string, script: string): Promise<{ out: string; rc: number }> {
  return new Promise((resolve, reject) => {
    const c = spawn("ip", ["netns", "exec", netns, "sh", "-c", 'sh -c "$1"; echo "rc=$?"', "sh", script], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.once("error", reject);
    c.once("close", () => {
      const m = /rc=(\d+)\n?$/.exec(out);
      resolve({ out: out.replace(/rc=\d+\n?$/, ""), rc: m ? Number(m[1]) : -1 });
    });
  });
}
