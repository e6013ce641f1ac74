/** `membrane agent --kubeconfig FILE` with a bad FILE: a clear error naming it, before anything is made. */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { startAgent } from "../../src/agent/run.js";

describe("agent --kubeconfig", () => {
  for (const c of [
    { name: "a missing file", text: undefined, want: /Cannot read kubeconfig .*missing\.yaml: ENOENT/ },
    { name: "no current cluster", text: "apiVersion: v1\nkind: Config\n", want: /names no current cluster/ },
  ]) {
    test(`${c.name}: refused with CONFIG_INVALID naming the file; no state directory, no agent`, async () => {
      const dir = await mkdtemp(join(tmpdir(), "membrane-kc-"));
      try {
        const file = join(dir, "missing.yaml");
        if (c.text !== undefined) await writeFile(file, c.text);
        await assert.rejects(
          startAgent({
            stateDir: join(dir, "state"),
            socketPath: join(dir, "agent.sock"),
            netnsPrefix: "mx6none-",
            podCidr4: "10.211.0.0/24",
            table: "mx6none",
            logGroup: 1,
            engine: {},
            logLevel: "silent",
            resyncMs: 0,
            k8s: { kubeconfig: file, nodeName: "n" },
          }),
          (e: Error & { code?: string }) => e.code === "CONFIG_INVALID" && c.want.test(e.message),
        );
        assert.equal(existsSync(join(dir, "state")), false);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  }
});
