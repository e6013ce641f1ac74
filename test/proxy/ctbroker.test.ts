/**
 * The conntrack broker (src/proxy/runtime/ctbroker.ts) outlives its proxy
 * quietly: when the proxy disconnects while lookups are in flight, the
 * answers that can no longer be sent are dropped and the broker exits 0.
 * Before, a send on the closed channel threw inside the netlink binding's
 * callback and aborted the process (SIGABRT, "terminate called after
 * throwing an instance of 'Napi::Error'"), seen in CI when the agent gave
 * up on a slow proxy start. The broker runs in a network namespace of its
 * own (`unshare --net`): its lookups never read the machine's conntrack.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { rootSkipReason } from "./supervisor-harness.js";

const skip = rootSkipReason();
const BROKER = fileURLToPath(new URL("../../src/proxy/runtime/ctbroker.js", import.meta.url));

function runOnce(): Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> {
  const child = spawn("unshare", ["--net", process.execPath, BROKER], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const safety = setTimeout(() => child.kill("SIGKILL"), 60_000);
  child.on("message", (m: unknown) => {
    if ((m as { ready?: boolean }).ready !== true) return;
    for (let i = 0; i < 3000; i++) {
      child.send({
        id: i,
        proto: "tcp",
        local: { address: "10.0.0.1", port: 80 },
        remote: { address: "10.0.0.2", port: 1024 + i },
      });
    }
    setImmediate(() => child.disconnect());
  });
  return new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      clearTimeout(safety);
      resolve({ code, signal, stderr });
    }),
  );
}

test(
  "the conntrack broker exits 0 when its proxy disconnects with lookups in flight (no abort)",
  { skip },
  async () => {
    for (let round = 0; round < 5; round++) {
      const r = await runOnce();
      assert.deepEqual(
        { code: r.code, signal: r.signal },
        { code: 0, signal: null },
        `round ${round}: ${r.stderr}`,
      );
    }
  },
);
