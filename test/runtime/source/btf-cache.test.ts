/**
 * The BTF offsets cache (src/runtime/source/btf-cache.ts) against this
 * kernel's own BTF: a start with a warm cache parses nothing and gets the
 * same offsets; a cache of another kernel, a damaged file or a field the
 * cache lacks falls back to parsing and rewrites it.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { killLayoutFrom } from "../../../src/runtime/enforce/kill-layout.js";
import { buildId, lastBtfCacheResult, withBtf } from "../../../src/runtime/source/btf-cache.js";
import { kernelBtf } from "../../../src/runtime/source/btf.js";
import { layoutFrom } from "../../../src/runtime/source/native-prog.js";

const BTF = "/sys/kernel/btf/vmlinux";
const skip = existsSync(BTF) ? undefined : "needs the kernel's BTF (/sys/kernel/btf/vmlinux)";

function note(type: number, name: string, desc: Buffer): Buffer {
  const n = Buffer.from(name + "\0");
  const pad = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
  const h = Buffer.alloc(12);
  h.writeUInt32LE(n.length, 0);
  h.writeUInt32LE(desc.length, 4);
  h.writeUInt32LE(type, 8);
  return Buffer.concat([h, pad(n), pad(desc)]);
}

describe("BTF offsets cache", { skip }, () => {
  test("the GNU build id is found among other notes; truncated or hostile notes give none", () => {
    const id = Buffer.from("32a7f3bacee6bf69da94f497a8a076483baea20e", "hex");
    const notes = Buffer.concat([note(6, "Linux", Buffer.from("6.18\0")), note(3, "GNU", id)]);
    assert.equal(buildId(notes), id.toString("hex"));
    assert.equal(buildId(notes.subarray(0, notes.length - 3)), undefined);
    const huge = Buffer.alloc(12);
    huge.writeUInt32LE(0xfffffff0, 0);
    assert.equal(buildId(huge), undefined);
    assert.equal(buildId(Buffer.alloc(0)), undefined);
  });

  test("cold start parses and writes the cache (0600); a warm start parses nothing and gets the same offsets", () => {
    const dir = mkdtempSync(join(tmpdir(), `hrt${randomBytes(3).toString("hex")}-btf-`));
    const cacheDir = join(dir, "cache");
    try {
      const btf = kernelBtf();
      const parsed = { exec: layoutFrom(btf), kill: killLayoutFrom(btf) };
      assert.deepEqual(withBtf(layoutFrom, { cacheDir }), parsed.exec);
      assert.equal(lastBtfCacheResult, "miss");
      const file = join(cacheDir, "btf-offsets.json");
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.equal(statSync(cacheDir).mode & 0o777, 0o700);
      // A second generator's fields join the same file.
      assert.deepEqual(withBtf(killLayoutFrom, { cacheDir }), parsed.kill);
      assert.equal(lastBtfCacheResult, "miss");
      assert.deepEqual(withBtf(layoutFrom, { cacheDir }), parsed.exec);
      assert.equal(lastBtfCacheResult, "hit");
      assert.deepEqual(withBtf(killLayoutFrom, { cacheDir }), parsed.kill);
      assert.equal(lastBtfCacheResult, "hit");

      // Another kernel's cache (its key differs) is not used, even with plausible fields.
      const o = JSON.parse(readFileSync(file, "utf8")) as { key: string; fields: Record<string, unknown> };
      writeFileSync(
        file,
        JSON.stringify({
          ...o,
          key: "another-kernel",
          fields: { ...o.fields, "task_struct.pid": { offset: 1, size: 4 } },
        }),
      );
      assert.deepEqual(withBtf(layoutFrom, { cacheDir }), parsed.exec);
      assert.equal(lastBtfCacheResult, "miss");
      assert.equal(withBtf(layoutFrom, { cacheDir }).taskPid, parsed.exec.taskPid);
      assert.equal(lastBtfCacheResult, "hit");

      // A damaged file, or an entry out of range: parsed again, rewritten.
      for (const bad of [
        "{",
        JSON.stringify({ ...o, fields: { ...o.fields, "task_struct.pid": { offset: -8, size: 4 } } }),
      ]) {
        writeFileSync(file, bad);
        assert.deepEqual(withBtf(killLayoutFrom, { cacheDir }), parsed.kill);
        assert.equal(lastBtfCacheResult, "miss");
      }
      // The cache off: always parsed.
      assert.deepEqual(withBtf(layoutFrom, { cacheDir: "" }), parsed.exec);
      assert.equal(lastBtfCacheResult, "off");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
