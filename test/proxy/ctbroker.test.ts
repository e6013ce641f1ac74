/**
 * The conntrack broker (src/proxy/runtime/ctbroker.ts) outlives its proxy
 * quietly: when the proxy disconnects while lookups are in flight, the
 * answers that can no longer be sent are dropped and the broker exits 0.
 * Before, a send on the closed channel threw inside the netlink binding's
 * callback and aborted the process (SIGABRT, "terminate called after
 * throwing an instance of 'Napi::Error'"), seen in CI when the agent gave
 * up on a slow proxy start. The broker runs in a network namespace of its
 * own (`unshare --net`): its lookups never read the machine's conntrack.
 * A request whose address or port is not one (abi/addr-port.ts) is refused
 * before any lookup.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { rootSkipReason } from "./supervisor-harness.js";
import { until } from "../support/until.js";
import { HOSTILE_ADDR_PORTS } from "../abi/hostile-addr-ports.js";

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

/** The broker in a namespace of its own, ready; every answer it sends, single or batched, in `answers`. */
async function startBroker(): Promise<{
  child: ChildProcess;
  answers: { id?: number; error?: string; address?: string }[];
}> {
  const child = spawn("unshare", ["--net", process.execPath, BROKER], {
    stdio: ["ignore", "ignore", "pipe", "ipc"],
  });
  const answers: { id?: number; error?: string; address?: string }[] = [];
  await new Promise<void>((r) =>
    child.on("message", (m: { ready?: boolean; batch?: unknown[] }) => {
      if (m.ready === true) return r();
      answers.push(...((Array.isArray(m.batch) ? m.batch : [m]) as typeof answers));
    }),
  );
  return { child, answers };
}

test(
  "the conntrack broker answers a batch of lookups, each on its own; a malformed one alone, an over-long batch refused",
  { skip },
  async () => {
    const { child, answers } = await startBroker();
    try {
      const req = (id: number) => ({
        id,
        proto: "udp",
        local: { address: "10.0.0.1", port: 53 },
        remote: { address: "10.0.0.2", port: 1024 + id },
      });
      child.send({ batch: [req(1), { id: 2, proto: "icmp" }, req(3)] });
      child.send({ batch: Array.from({ length: 257 }, (_, i) => req(10 + i)) });
      await until("the broker's answers", () => answers.length >= 4);
      // No conntrack entry in this namespace: each lookup answered without an address.
      assert.deepEqual(
        answers
          .map(
            (a) =>
              `${a.id}${a.error !== undefined ? ` ${a.error}` : ""}${a.address !== undefined ? " addr" : ""}`,
          )
          .sort(),
        ["-1 malformed request", "-1 malformed request", "1", "3"],
      );
    } finally {
      child.kill("SIGKILL");
    }
  },
);

test(
  "the conntrack broker refuses every hostile address or port (local or remote) and still answers a good lookup",
  { skip },
  async () => {
    const { child, answers } = await startBroker();
    try {
      const good = { address: "10.0.0.1", port: 53 };
      HOSTILE_ADDR_PORTS.forEach((h, i) => {
        child.send({ id: 2 * i, proto: "udp", local: h.value, remote: good });
        child.send({ id: 2 * i + 1, proto: "udp", local: good, remote: h.value });
      });
      child.send({ id: 9999, proto: "udp", local: good, remote: { address: "10.0.0.2", port: 1024 } });
      const owed = 2 * HOSTILE_ADDR_PORTS.length + 1;
      await until("the broker's answers", () => answers.length >= owed);
      assert.deepEqual(
        answers.map((a) => `${a.id} ${a.error ?? "looked up"}`).sort(),
        [...Array<string>(owed - 1).fill("-1 malformed request"), "9999 looked up"].sort(),
      );
    } finally {
      child.kill("SIGKILL");
    }
  },
);
