/**
 * TracingPolicy uprobes end to end (root): a real agent with runtime events,
 * a tiny C program built here with gcc, run in endpoint namespaces the agent
 * created; the probed function's call is a process_uprobe line with the
 * endpoint's pod (parsed with Tetragon's own descriptors), an unselected
 * endpoint's call is nothing, and a Sigkill selector kills the caller before
 * the function's first instruction runs.
 *
 * The program waits for a line on stdin before it calls the function, and
 * the test writes it only once the agent has the process's exec event: the
 * process cache then knows the process when the uprobe event arrives
 * (otherwise which comes first is a race, and the pod could be missing).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { isMembraneError } from "../../../src/errors.js";
import type { RuntimeEvent, ProcessUprobe, ProcessExec } from "../../../src/runtime/events.js";
import { AgentLab } from "../../agent/e2e/harness.js";
import { parseStrict } from "../tetragon-schema.js";
import { runtimeSkipReason, until } from "./helpers.js";

const skip =
  runtimeSkipReason() ??
  (spawnSync("sh", ["-c", "command -v gcc"]).status === 0
    ? undefined
    : "needs gcc (scripts/install-system-deps.sh)");

const PROGRAM = `#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
/* The probed function: its side effect (the marker file) shows whether its body ran. */
__attribute__((noinline, noipa)) long m2r_secret(const char *word, long n, const char *marker) {
  int fd = open(marker, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd >= 0) { (void)!write(fd, word, strlen(word)); close(fd); }
  return (long)strlen(word) + n;
}
int main(int argc, char **argv) {
  char line[8];
  if (argc < 3) return 2;
  if (read(0, line, sizeof line) < 0) return 3;
  printf("called %ld\\n", m2r_secret(argv[1], 42, argv[2]));
  return 0;
}
`;

const POLICY = (bin: string, symbol = "m2r_secret"): string => `apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata: {name: m2r-uprobe}
spec:
  podSelector: {matchLabels: {app: victim}}
  uprobes:
  - path: ${bin}
    symbols: [${symbol}]
    message: secret function called
    args: [{index: 0, type: string, label: word}, {index: 1, type: int64}]
    selectors:
    - matchArgs: [{index: 0, operator: Equal, values: [kill-me]}]
      matchActions: [{action: Sigkill}]
    - matchActions: [{action: Post}]
`;

interface Run {
  readonly pid: number;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly out: string;
  readonly exec: ProcessExec;
}

describe("TracingPolicy uprobes through the agent (root)", { skip }, () => {
  test("the probed call is a process_uprobe with the pod; unselected endpoints give none; Sigkill kills before the body runs; a missing symbol loads nothing", async () => {
    const dir = mkdtempSync(join(tmpdir(), "m2r-uprobe-"));
    const bin = join(dir, "m2r-secret");
    writeFileSync(join(dir, "p.c"), PROGRAM);
    const cc = spawnSync("gcc", ["-O0", "-o", bin, join(dir, "p.c")], { encoding: "utf8" });
    assert.equal(cc.status, 0, cc.stderr);
    const lab = await AgentLab.start("m2r", { runtime: true });
    const events = (): RuntimeEvent[] => lab.agent.runtime?.read({}) ?? [];
    /** Runs the program in an endpoint; the call happens only after the agent saw the exec. */
    const run = async (netns: string, word: string, marker: string): Promise<Run> => {
      const c = spawn("ip", ["netns", "exec", netns, bin, word, marker], { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      c.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      const closed = new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
        c.once("close", (code, signal) => resolve([code, signal])),
      );
      const pid = c.pid ?? -1;
      let exec: ProcessExec | undefined;
      await until(`the exec event of ${word}`, () => {
        for (const e of events())
          if (
            "process_exec" in e &&
            e.process_exec.process.pid === pid &&
            e.process_exec.process.binary === bin
          )
            exec = e.process_exec;
        return exec !== undefined;
      });
      c.stdin.end("go\n");
      const [code, signal] = await closed;
      assert.ok(exec);
      return { pid, code, signal, out, exec };
    };
    const uprobesOf = (pid: number): ProcessUprobe[] =>
      events().flatMap((e) =>
        "process_uprobe" in e && e.process_uprobe.process.pid === pid ? [e.process_uprobe] : [],
      );
    try {
      const victim = await lab.endpoint("victim", { app: "victim" });
      const other = await lab.endpoint("other", { app: "other" });
      const report = await lab.agent.tracing.apply(POLICY(bin), "uprobe.yaml");
      assert.match(JSON.stringify(report), /loaded/);

      // Unselected endpoint first: its call completes before the selected one's.
      const o = await run(other.view.netns, "hello", join(dir, "other"));
      assert.deepEqual([o.code, o.out], [0, "called 47\n"]);

      const v = await run(victim.view.netns, "hello", join(dir, "victim"));
      assert.deepEqual([v.code, v.out], [0, "called 47\n"]);
      await until("the process_uprobe event", () => uprobesOf(v.pid).length > 0);
      const line = events().find((e) => "process_uprobe" in e && e.process_uprobe.process.pid === v.pid);
      const u = parseStrict(JSON.stringify(line))["process_uprobe"] as Record<string, unknown>;
      assert.equal(u["path"], bin);
      assert.equal(u["symbol"], "m2r_secret");
      assert.equal(u["policy_name"], "m2r-uprobe");
      assert.equal(u["action"], "KPROBE_ACTION_POST");
      assert.equal(u["message"], "secret function called");
      assert.deepEqual(u["args"], [{ string_arg: "hello", label: "word" }, { int_arg: 42 }]);
      const proc = u["process"] as Record<string, unknown>;
      assert.equal(proc["exec_id"], v.exec.process.exec_id);
      assert.deepEqual(proc["pod"], {
        namespace: "default",
        name: "victim",
        pod_labels: { app: "victim" },
        workload: "victim",
      });
      assert.equal(uprobesOf(v.pid).length, 1, "one call, one event");
      assert.deepEqual(uprobesOf(o.pid), [], "the unselected endpoint's call is not reported");

      // Sigkill: the signal is pending when the breakpoint returns to user space, before the body.
      const k = await run(victim.view.netns, "kill-me", join(dir, "killed"));
      assert.deepEqual([k.signal, k.out], ["SIGKILL", ""]);
      assert.equal(existsSync(join(dir, "killed")), false, "the function's body never ran");
      assert.equal(readFileSync(join(dir, "victim"), "utf8"), "hello");
      await until("the kill event", () => uprobesOf(k.pid).length > 0);
      assert.equal(uprobesOf(k.pid)[0]?.action, "KPROBE_ACTION_SIGKILL");

      // A symbol the file does not have: refused when loading, nothing of that policy attached.
      await assert.rejects(
        lab.agent.tracing.apply(
          POLICY(bin, "m2r_missing").replace("m2r-uprobe", "m2r-missing"),
          "missing.yaml",
        ),
        (e) => {
          assert.ok(isMembraneError(e), String(e));
          assert.equal(e.code, "RUNTIME_ENFORCER_FAILED");
          assert.match(e.message, /m2r_missing/);
          return true;
        },
      );
      assert.deepEqual(
        lab.agent.tracing.list().map((s) => [s.name, s.state]),
        [["m2r-uprobe", "loaded"]],
      );
    } finally {
      await lab.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
