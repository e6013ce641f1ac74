import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import {
  mkdtempSync,
  rmSync,
  readFileSync,
  writeFileSync,
  appendFileSync,
  statSync,
  existsSync,
  truncateSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino, type Logger } from "pino";
import { EmbeddedStore, LOG_FILE, SNAPSHOT_FILE } from "../../src/store/embedded.js";
import { LOCK_FILE } from "../../src/store/lock.js";
import { MembraneError } from "../../src/errors.js";
import { storeContract } from "./contract.js";

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "membrane-store-"));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const silent = pino({ level: "silent" });

/** A logger whose lines are kept for assertions. */
function capture(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => out.push(s) });
  return { logger, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

storeContract("embedded", () => EmbeddedStore.open({ dir: tempDir(), logger: silent }));
// The same contract with compaction after almost every write: the snapshot path must be invisible.
storeContract("embedded, compacting constantly", () =>
  EmbeddedStore.open({ dir: tempDir(), logger: silent, compactAfterBytes: 64 }),
);

describe("embedded store: durability", () => {
  test("every put acknowledged before kill -9 is there on reopen", async () => {
    const dir = tempDir();
    const child = fileURLToPath(new URL("./fixtures/put-child.js", import.meta.url));
    const p = spawn(process.execPath, [child, dir], { stdio: ["ignore", "pipe", "inherit"] });
    let acked: { i: number; rev: number } | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        let buf = "";
        p.stdout.on("data", (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split("\n");
          buf = lines.pop() ?? "";
          for (const l of lines) {
            const [, i, rev] = l.split(" ");
            acked = { i: Number(i), rev: Number(rev) };
            if (acked.i >= 50) {
              p.kill("SIGKILL");
              resolve();
            }
          }
        });
        p.on("exit", () => resolve());
        p.on("error", reject);
      });
    } finally {
      p.kill("SIGKILL");
    }
    if (p.exitCode === null && p.signalCode === null) await once(p, "exit");
    assert.ok(acked && acked.i >= 50, "the child acknowledged at least 51 puts");
    // The child's lock names a dead process: it is stale and taken over.
    const s = await EmbeddedStore.open({ dir, logger: silent });
    try {
      for (let i = 0; i <= acked.i; i++) assert.equal((await s.get(`d/${i}`))?.value, `value-${i}`, `d/${i}`);
      assert.ok((await s.revision()) >= acked.rev);
    } finally {
      await s.close();
    }
  });

  const tails: { name: string; damage: (log: string) => void }[] = [
    { name: "a half-written last record", damage: (log) => truncateSync(log, statSync(log).size - 3) },
    {
      name: "a flipped byte in the last record",
      damage: (log) => {
        const b = readFileSync(log);
        const i = b.length - 2;
        b[i] = (b[i] ?? 0) ^ 0x40;
        writeFileSync(log, b);
      },
    },
    {
      name: "a torn header after the last record",
      damage: (log) => appendFileSync(log, Buffer.from([0, 0, 0])),
    },
  ];
  for (const t of tails) {
    test(`a corrupt tail is truncated on open and logged: ${t.name}`, async () => {
      const dir = tempDir();
      const s1 = await EmbeddedStore.open({ dir, logger: silent });
      await s1.put("kept", "1");
      await s1.put("last", "2");
      await s1.close();
      const log = join(dir, LOG_FILE);
      const sizeAfterKept = (() => {
        // The first record: 8 header bytes + its JSON payload.
        const b = readFileSync(log);
        return 8 + b.readUInt32BE(0);
      })();
      const sizeIntact = statSync(log).size;
      t.damage(log);
      const c = capture();
      const s2 = await EmbeddedStore.open({ dir, logger: c.logger });
      try {
        assert.equal((await s2.get("kept"))?.value, "1");
        const lastSurvives = t.name.includes("after the last record");
        assert.equal((await s2.get("last"))?.value, lastSurvives ? "2" : undefined);
        const warn = c.lines().find((l) => l["level"] === 40);
        assert.equal(
          warn?.["msg"],
          "store log has a torn or corrupt tail; truncating it (writes there were never acknowledged)",
        );
        assert.equal(statSync(log).size, lastSurvives ? sizeIntact : sizeAfterKept);
        // Writes after the repair land and survive another reopen.
        await s2.put("after", "3");
      } finally {
        await s2.close();
      }
      const s3 = await EmbeddedStore.open({ dir, logger: silent });
      try {
        assert.equal((await s3.get("after"))?.value, "3");
      } finally {
        await s3.close();
      }
    });
  }

  test("compaction writes a snapshot, empties the log, and a reopen sees the same state and revision", async () => {
    const dir = tempDir();
    const s1 = await EmbeddedStore.open({ dir, logger: silent });
    for (let i = 0; i < 10; i++) await s1.put(`k/${i}`, `v${i}`);
    await s1.delete("k/3");
    await s1.compact();
    assert.equal(statSync(join(dir, LOG_FILE)).size, 0);
    assert.ok(existsSync(join(dir, SNAPSHOT_FILE)));
    const rev = await s1.put("k/after", "x");
    const before = (await s1.list("")).kvs;
    await s1.close();
    const s2 = await EmbeddedStore.open({ dir, logger: silent });
    try {
      assert.deepEqual((await s2.list("")).kvs, before);
      assert.equal(await s2.revision(), rev);
      // History before the snapshot is gone after a restart: the watch says so instead of skipping changes.
      await assert.rejects(
        s2.watch("k/", 2, () => undefined),
        (e: unknown) =>
          e instanceof MembraneError &&
          e.code === "STORE_FAILED" &&
          e.message === `Cannot watch "k/" from revision 2: changes up to revision ${rev - 1} were compacted`,
      );
    } finally {
      await s2.close();
    }
  });
});

test("embedded store: writes racing with compaction all survive a reopen", async () => {
  const dir = tempDir();
  const s1 = await EmbeddedStore.open({ dir, logger: silent });
  const puts: Promise<number>[] = [];
  const compactions: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) {
    puts.push(s1.put(`r/${String(i).padStart(3, "0")}`, `v${i}`));
    if (i % 10 === 0) compactions.push(s1.compact());
    if (i % 7 === 0) await new Promise((r) => setImmediate(r));
  }
  await Promise.all([...puts, ...compactions]);
  await s1.close();
  const s2 = await EmbeddedStore.open({ dir, logger: silent });
  try {
    const kvs = (await s2.list("r/")).kvs;
    assert.equal(kvs.length, 100);
    assert.deepEqual(
      kvs.map((kv) => kv.value),
      Array.from({ length: 100 }, (_, i) => `v${i}`),
    );
  } finally {
    await s2.close();
  }
});

describe("embedded store: the state directory lock", () => {
  test("a second opener of the same directory is refused with STORE_LOCKED while the first is open", async () => {
    const dir = tempDir();
    const s1 = await EmbeddedStore.open({ dir, logger: silent });
    try {
      await assert.rejects(
        EmbeddedStore.open({ dir, logger: silent }),
        (e: unknown) =>
          e instanceof MembraneError &&
          e.code === "STORE_LOCKED" &&
          e.message === `Cannot open the store in ${dir}: it is locked by the running process ${process.pid}`,
      );
    } finally {
      await s1.close();
    }
    assert.equal(existsSync(join(dir, LOCK_FILE)), false, "close releases the lock");
    const s2 = await EmbeddedStore.open({ dir, logger: silent });
    await s2.close();
  });

  test("a lock left by a dead process is taken over", async () => {
    const dir = tempDir();
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid;
    writeFileSync(join(dir, LOCK_FILE), `${dead} 12345\n`);
    const s = await EmbeddedStore.open({ dir, logger: silent });
    await s.put("k", "v");
    assert.match(readFileSync(join(dir, LOCK_FILE), "utf8"), new RegExp(`^${process.pid} `));
    await s.close();
  });

  test("a closed store refuses calls with STORE_FAILED", async () => {
    const dir = tempDir();
    const s = await EmbeddedStore.open({ dir, logger: silent });
    await s.close();
    await assert.rejects(
      s.get("k"),
      (e: unknown) =>
        e instanceof MembraneError && e.message === `Cannot use the store in ${dir}: it is closed`,
    );
  });
});
