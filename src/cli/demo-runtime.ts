/**
 * `membrane demo`, the runtime step: a TracingPolicy kills a workload that
 * reads /etc/shadow, from the kernel, and the event names the policy.
 *
 *   apply TracingPolicy (deathstar only) -> cat /etc/shadow in deathstar: killed (137), nothing printed
 *                                        -> the same in xwing: not selected, reads it (contents not shown)
 */
import { spawn, spawnSync } from "node:child_process";
import type { Agent } from "../agent/agent.js";
import { table } from "./format.js";

/**
 * A TracingPolicy that kills a process of the pods `label` selects ("key: value") when it opens
 * /etc/shadow: the demo's runtime step, and the kill benchmarks' (bench/runtime-kill.ts,
 * runtime-overhead.ts).
 */
export function shadowKillPolicy(name: string, label: string): string {
  return `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: ${name}}
spec:
  podSelector: {matchLabels: {${label}}}
  kprobes:
  - call: sys_openat
    syscall: true
    args: [{index: 1, type: string}]
    selectors:
    - matchArgs: [{index: 1, operator: Equal, values: [/etc/shadow]}]
      matchActions: [{action: Sigkill}]
`;
}

export const SHADOW_POLICY = shadowKillPolicy("deathstar-no-shadow", "class: deathstar");

function catShadow(netns: string): Promise<{ rc: number; lines: number }> {
  return new Promise((resolve) => {
    const c = spawn("ip", ["netns", "exec", netns, "sh", "-c", 'cat /etc/shadow; echo "rc=$?"'], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    let out = "";
    c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
    c.once("close", () => {
      const m = /rc=(\d+)\n?$/.exec(out);
      const body = out.replace(/rc=\d+\n?$/, "");
      resolve({ rc: m ? Number(m[1]) : -1, lines: body === "" ? 0 : body.trimEnd().split("\n").length });
    });
  });
}

/** Runs the step; returns the number of outcomes that differ from what the policy says (0 or more). */
export async function runtimeStep(agent: Agent, out: (s: string) => void): Promise<number> {
  out("Step 6: runtime security. A TracingPolicy kills any deathstar process that opens /etc/shadow:\n");
  if (spawnSync("sh", ["-c", "command -v bpftrace"]).status !== 0) {
    out("  (skipped: bpftrace is not installed; scripts/install-system-deps.sh installs it)\n\n");
    return 0;
  }
  out(
    SHADOW_POLICY.trimEnd()
      .split("\n")
      .map((l) => "  " + l)
      .join("\n") + "\n",
  );
  const rep = await agent.tracing.apply(SHADOW_POLICY, "deathstar-no-shadow.yaml");
  out(`  -> ${rep.policies.map((p) => `${p.name}: ${p.state}, ${p.endpoints} endpoint`).join("; ")}\n`);
  const rows: string[][] = [["ENDPOINT", "COMMAND", "EXIT", "OUTPUT"]];
  let mismatches = 0;
  for (const [name, expectKilled] of [
    ["deathstar", true],
    ["xwing", false],
  ] as const) {
    const r = await catShadow(agent.getEndpoint("default", name).netns);
    if ((r.rc === 137) !== expectKilled) mismatches++;
    rows.push([
      name,
      "cat /etc/shadow",
      r.rc === 137 ? "137 (SIGKILL)" : String(r.rc),
      r.lines === 0 ? "nothing" : `${r.lines} lines (not shown)`,
    ]);
  }
  out(
    table(rows)
      .map((l) => "  " + l)
      .join("\n") + "\n",
  );
  await new Promise((r) => setTimeout(r, 300));
  const events = agent.tracing.recent().filter((e) => e.policyName === "deathstar-no-shadow");
  out("Runtime events (process_kprobe, as Tetragon exports them):\n");
  for (const e of events)
    out(
      `  ${e.time.toISOString()} ${e.action} policy=${e.policyName} ${e.functionName}(${e.args.map((a) => a.value ?? "?").join(", ")}) pid=${e.pid} comm=${e.comm}\n`,
    );
  if (events.length === 0) out("  (none)\n");
  out("\n");
  return mismatches;
}
