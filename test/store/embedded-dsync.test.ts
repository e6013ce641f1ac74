/**
 * The embedded store's log is opened O_DSYNC (Linux): a commit is one write that returns
 * once durable, not a write and then an fdatasync (two threadpool operations, two turns
 * of the event loop). Read from the kernel's own view of the descriptor
 * (/proc/self/fdinfo), and the durability itself stays tested by embedded.test.ts (kill -9).
 */
import assert from "node:assert/strict";
import { constants } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { pino } from "pino";
import { EmbeddedStore } from "../../src/store/embedded.js";

test("the store's log descriptor is O_DSYNC and a put calls no separate fdatasync", async () => {
  const dir = await mkdtemp(join(tmpdir(), "mbr-dsync-"));
  const s = await EmbeddedStore.open({ dir, logger: pino({ level: "silent" }) });
  try {
    const log = (s as unknown as { log: { fd: number; datasync: () => Promise<void> } }).log;
    const info = await readFile(`/proc/self/fdinfo/${log.fd}`, "utf8");
    const flags = parseInt(/flags:\s*([0-7]+)/.exec(info)?.[1] ?? "0", 8);
    assert.ok((flags & constants.O_DSYNC) !== 0, `fdinfo flags ${flags.toString(8)} lack O_DSYNC`);
    let datasyncs = 0;
    const orig = log.datasync.bind(log);
    log.datasync = () => {
      datasyncs++;
      return orig();
    };
    await s.put("k", "v");
    assert.equal(datasyncs, 0);
    assert.equal((await s.get("k"))?.value, "v");
  } finally {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  }
});
