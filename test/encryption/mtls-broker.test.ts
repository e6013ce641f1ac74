/**
 * The mTLS tunnel's privileged broker (src/encryption/mtls/broker.ts) refuses a conntrack lookup
 * whose address or port is not one, or that carries any key beside the two (abi/addr-port.ts),
 * before it looks anything up, and still answers a good one. The real broker process, in a network
 * namespace of its own (`unshare --net`): its lookups never read the machine's conntrack.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { rootSkipReason } from "../datapath/harness.js";
import { until } from "../support/until.js";
import { HOSTILE_ADDR_PORTS } from "../abi/hostile-addr-ports.js";

const BROKER = fileURLToPath(new URL("../../src/encryption/mtls/broker.js", import.meta.url));

test(
  "the mTLS broker refuses every hostile address or port, and extra keys, and answers a good lookup",
  { skip: rootSkipReason() },
  async () => {
    const child = spawn("unshare", ["--net", process.execPath, BROKER], {
      stdio: ["ignore", "ignore", "pipe", "ipc"],
    });
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    try {
      const answers: { id?: number; error?: string; fatal?: string }[] = [];
      await new Promise<void>((resolve, reject) =>
        child.on("message", (m: { ready?: boolean; fatal?: string }) => {
          if (m.fatal !== undefined) reject(new Error(`broker: ${m.fatal} ${stderr}`));
          else if (m.ready === true) resolve();
          else answers.push(m);
        }),
      );
      const good = { address: "10.0.0.1", port: 8443 };
      const hostile = [
        ...HOSTILE_ADDR_PORTS.map((h) => h.value),
        { address: "10.0.0.2", port: 1024, family: "IPv4" }, // a key the tunnel never sends
      ];
      hostile.forEach((h, i) => {
        child.send({ id: 2 * i, op: "ct", local: h, remote: good });
        child.send({ id: 2 * i + 1, op: "ct", local: good, remote: h });
      });
      child.send({ id: 9999, op: "ct", local: good, remote: { address: "10.0.0.2", port: 1024 } });
      const owed = 2 * hostile.length + 1;
      await until("the broker's answers", () => answers.length >= owed, { detail: () => stderr });
      assert.deepEqual(
        answers.map((a) => `${a.id} ${a.error ?? "looked up"}`).sort(),
        [...Array<string>(owed - 1).fill("-1 malformed request"), "9999 looked up"].sort(),
      );
    } finally {
      child.kill("SIGKILL");
    }
  },
);
