/**
 * The event source's start waits for its own canary exec: bpftrace says
 * "attached" before the kernel runs its programs, so an exec right after a
 * start that trusted that message was lost. Real bpftrace, real processes.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { ProcessRecord } from "../../../src/runtime/source/assemble.js";
import { BpftraceSource } from "../../../src/runtime/source/bpftrace.js";
import { runtimeSkipReason, until } from "../enforce/helpers.js";

const skip = runtimeSkipReason();

function run(argv: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(argv[0] as string, argv.slice(1), { stdio: "ignore" });
    c.once("error", reject);
    c.once("exit", () => resolve());
  });
}

describe("process event source start (root, bpftrace)", { skip }, () => {
  test("an exec right after start() resolves is reported; the canary's own records are not", async () => {
    const records: ProcessRecord[] = [];
    const src = new BpftraceSource({ onRecord: (r) => records.push(r), onDrop: () => undefined });
    const marker = `rgfirst${randomBytes(4).toString("hex")}`;
    try {
      await src.start();
      await run(["/bin/true", marker]);
      await until(
        "the exec of the first process after start",
        () => records.some((r) => r.kind === "exec" && r.argv[1] === marker),
        60_000,
      );
      assert.equal(src.canarySeen, true);
      assert.ok(
        !records.some((r) => r.kind === "exec" && r.argv.some((a) => a.startsWith("membrane-canary-"))),
        "canary execs are not reported",
      );
    } finally {
      await src.stop();
    }
  });

  test("programs that never run: start resolves, says so, and the status shows it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "rg-canary-"));
    const fake = join(dir, "bpftrace");
    // Says "attached" and then never runs anything: what a late attach looks like, forever.
    writeFileSync(
      fake,
      `#!/bin/sh\necho '{"type": "attached_probes", "data": {"probes": 7}}'\nexec sleep 600\n`,
    );
    chmodSync(fake, 0o755);
    let unseen = -1;
    const src = new BpftraceSource({
      bpftrace: fake,
      canary: { timeoutMs: 300, intervalMs: 50 },
      onRecord: () => undefined,
      onDrop: () => undefined,
      onCanaryUnseen: (n) => (unseen = n),
    });
    try {
      await src.start();
      assert.equal(src.canarySeen, false);
      assert.ok(unseen >= 1, `canaries spawned: ${unseen}`);
    } finally {
      await src.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
