/**
 * Runtime events end to end: a real agent with the native event source (the
 * bpftrace fallback has its own tests: ../source, ../lines.test.ts), real
 * processes in endpoint namespaces, events read from the agent, the API, the
 * CLI and /metrics, every line parsed strictly with Tetragon's schema.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { promisify } from "node:util";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { runRaw } from "../../../src/datapath/exec.js";
import type { ProcessExec, ProcessExit, RuntimeEvent } from "../../../src/runtime/events.js";
import { AgentLab, rootSkipReason } from "../../agent/e2e/harness.js";
import { parseStrict } from "../tetragon-schema.js";

const run = promisify(execFile);
const BIN = fileURLToPath(new URL("../../../../bin/membrane.js", import.meta.url));
const skip = rootSkipReason();

function events(lab: AgentLab): RuntimeEvent[] {
  const rt = lab.agent.runtime;
  assert.ok(rt, "runtime events are on");
  return rt.read({});
}

/** Waits for an event (safety net: 30 s, never a timing assertion). */
async function waitFor<T>(lab: AgentLab, what: string, pick: (e: RuntimeEvent) => T | undefined): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    for (const e of events(lab)) {
      const v = pick(e);
      if (v !== undefined) return v;
    }
    if (Date.now() > deadline) {
      const near = events(lab)
        .map((e) => JSON.stringify(e))
        .filter((j) => j.includes(what.split(" ")[1] ?? what));
      throw new Error(`no runtime event: ${what}; events naming it: ${near.join("\n")}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

const execOf =
  (marker: string, binary?: string) =>
  (e: RuntimeEvent): ProcessExec | undefined =>
    "process_exec" in e &&
    e.process_exec.process.arguments.includes(marker) &&
    (binary === undefined || e.process_exec.process.binary.endsWith(binary))
      ? e.process_exec
      : undefined;
const exitOf =
  (execId: string) =>
  (e: RuntimeEvent): ProcessExit | undefined =>
    "process_exit" in e && e.process_exit.process.exec_id === execId ? e.process_exit : undefined;

describe("runtime events of real processes (needs root)", { skip }, () => {
  test("exec/exit with codes and signals, fork, parents, pods, the host, strict JSON, CLI, metrics, restart", async () => {
    const lab = await AgentLab.start("rt", { runtime: true });
    assert.equal(lab.agent.runtime?.status()["source"], "native", "the agent runs the native source here");
    const fifo = `/tmp/${lab.prefix}.fifo`;
    try {
      const web = await lab.endpoint("web", { app: "web" });
      const db = await lab.endpoint("db", { app: "db" });
      const inWeb = (script: string, marker: string): Promise<unknown> =>
        runRaw(["sh", "-c", script, marker], { netns: web.view.netns });

      // exit code 7
      await inWeb("exit 7", "m1code");
      const e1 = await waitFor(lab, "exec m1code", execOf("m1code", "/sh"));
      assert.deepEqual(e1.process.pod, {
        namespace: "default",
        name: "web",
        pod_labels: { app: "web" },
        workload: "web",
      });
      const x1 = await waitFor(lab, "exit m1code", exitOf(e1.process.exec_id));
      assert.equal(x1.status, 7);
      assert.equal(x1.signal, undefined);

      // killed by a signal
      await inWeb("kill -9 $$", "m2signal");
      const e2 = await waitFor(lab, "exec m2signal", execOf("m2signal", "/sh"));
      assert.equal((await waitFor(lab, "exit m2signal", exitOf(e2.process.exec_id))).signal, "SIGKILL");

      // a short-lived child: its arguments and cwd are still there; its parent is named
      await inWeb('cd /tmp && /bin/true m3child "a b"; (exit 5); true', "m3parent");
      const parent = await waitFor(lab, "exec m3parent", execOf("m3parent", "/sh"));
      const child = await waitFor(lab, "exec m3child", execOf("m3child", "/true"));
      assert.equal(child.process.cwd, "/tmp");
      assert.equal(child.process.arguments, 'm3child "a b"');
      assert.equal(child.process.parent_exec_id, parent.process.exec_id);
      assert.equal(child.parent?.exec_id, parent.process.exec_id);
      assert.equal(child.process.pod?.name, "web");
      assert.match(child.process.flags, /execve/);
      // fork without exec: the subshell `(exit 5)` exits 5 as a clone of its parent
      const fork = await waitFor(lab, "clone exit 5", (e) =>
        "process_exit" in e &&
        e.process_exit.process.flags === "clone" &&
        e.process_exit.process.parent_exec_id === parent.process.exec_id &&
        e.process_exit.status === 5
          ? e.process_exit
          : undefined,
      );
      assert.equal(fork.process.binary, parent.process.binary);

      // another endpoint's process is its own; the host's has no pod
      await runRaw(["sh", "-c", "true", "m4db"], { netns: db.view.netns });
      await runRaw(["sh", "-c", "true", "m4host"]);
      const edb = await waitFor(lab, "exec m4db", execOf("m4db", "/sh"));
      assert.deepEqual(edb.process.pod?.pod_labels, { app: "db" });
      const ehost = await waitFor(lab, "exec m4host", execOf("m4host", "/sh"));
      assert.equal(ehost.process.pod, undefined);

      // every event the agent holds parses with Tetragon's schema, unknown fields refused
      const all = events(lab);
      for (const e of all) parseStrict(JSON.stringify(e));

      // the CLI: Tetragon JSON lines filtered by endpoint and type; a table for people
      // (asynchronous: the agent answering it runs in this process)
      const cli = async (args: string[]): Promise<string> =>
        (await run(process.execPath, [BIN, "runtime", "events", "--socket", lab.options.socketPath, ...args]))
          .stdout;
      const lines = (
        await cli(["--endpoint", "default/web", "--type", "exit", "--last", "1000", "-o", "json"])
      )
        .trim()
        .split("\n");
      assert.ok(lines.length >= 3);
      for (const l of lines) {
        const p = parseStrict(l);
        const exit = p["process_exit"] as { process: { pod: { name: string } } } | undefined;
        assert.equal(exit?.process.pod.name, "web");
      }
      // (the endpoint too: other processes of a busy machine run /bin/true as well, and the host's
      // flood of them once pushed m3child out of the last 1000)
      const table = await cli(["--endpoint", "default/web", "--binary", "/true", "--last", "1000"]);
      assert.match(
        table,
        /default\/web \/usr\/bin\/true m3child "a b"|default\/web \/bin\/true m3child "a b"/,
      );
      assert.doesNotMatch(table, /m4host/);

      // metrics in Tetragon's names
      const metrics = await lab.agent.runtime!.metrics.registry.metrics();
      assert.match(
        metrics,
        /tetragon_events_total\{type="PROCESS_EXEC",namespace="default",workload="web",pod="web",binary="\/usr\/bin\/sh"\} \d+/,
      );
      assert.match(metrics, /tetragon_events_total\{type="PROCESS_EXIT",namespace="default"/);

      // restart: a process started before it is named as the parent of its child after it
      spawnSync("mkfifo", [fifo]);
      const waiting = spawn(
        "ip",
        ["netns", "exec", web.view.netns, "sh", "-c", `read x < ${fifo}; /bin/true m5child`, "m5before"],
        {
          stdio: "ignore",
        },
      );
      const waited = new Promise((r) => waiting.once("exit", r));
      await waitFor(lab, "exec m5before", execOf("m5before", "/sh"));
      await lab.stopAgent();
      await lab.startAgent();
      // No wait for a first exec here: the source's start waited for its own canary (source/canary.ts).
      assert.equal(lab.agent.runtime!.status()["canarySeen"], 1);
      await runRaw(["sh", "-c", `echo go > ${fifo}`]);
      const after = await waitFor(lab, "exec m5child", execOf("m5child", "/true"));
      // /proc names the file (sh is a link to dash on Debian), the exec event the name it was run by
      assert.match(after.parent?.binary ?? "", /\/(sh|dash)$/);
      assert.match(after.parent?.arguments ?? "", /m5before/);
      assert.match(after.parent?.flags ?? "", /procFS/);
      assert.equal(after.process.pod?.name, "web");
      await waited;
    } finally {
      rmSync(fifo, { force: true });
      await lab.destroy();
    }
  });
});
