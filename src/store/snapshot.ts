/**
 * The embedded store's snapshot file: the whole key space at one revision,
 * as a single checksummed record (record.ts). Written aside, fsynced,
 * renamed into place and the directory fsynced, so a crash leaves either the
 * old snapshot or the new one, never half of one.
 */
import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { MembraneError } from "../errors.js";
import { decodeRecords, encodeRecord } from "./record.js";
import type { KeyValue } from "./store.js";

export const SNAPSHOT_FILE = "store.snap";

type SnapshotKv = [key: string, value: string, createRevision: number, modRevision: number];

export interface Snapshot {
  readonly revision: number;
  readonly kvs: KeyValue[];
}

/** Reads the snapshot (undefined if there is none yet) and removes a half-written one. */
export async function readSnapshot(dir: string): Promise<Snapshot | undefined> {
  await rm(join(dir, SNAPSHOT_FILE + ".tmp"), { force: true });
  const path = join(dir, SNAPSHOT_FILE);
  const buf = await readFile(path).catch((e: NodeJS.ErrnoException) => {
    if (e.code === "ENOENT") return undefined;
    throw new MembraneError("STORE_FAILED", `Cannot read the snapshot ${path}: ${e.message}`, { cause: e });
  });
  if (!buf) return undefined;
  const d = decodeRecords(buf);
  const body = d.payloads[0];
  if (d.problem !== undefined || d.payloads.length !== 1 || !body) {
    // The snapshot is written aside and renamed into place, so damage here is the disk's doing.
    throw new MembraneError(
      "STORE_FAILED",
      `Cannot open the store in ${dir}: the snapshot is damaged (${d.problem ?? "wrong record count"})`,
      {
        hint: `restore ${path} from a backup; the agent will not guess at lost state`,
      },
    );
  }
  const parsed = JSON.parse(body.toString("utf8")) as { revision: number; kvs: SnapshotKv[] };
  return {
    revision: parsed.revision,
    kvs: parsed.kvs.map(([key, value, createRevision, modRevision]) => ({
      key,
      value,
      createRevision,
      modRevision,
    })),
  };
}

/** Durably replaces the snapshot; when this resolves, the new one survives a crash. */
export async function writeSnapshot(dir: string, revision: number, kvs: Iterable<KeyValue>): Promise<number> {
  const rows: SnapshotKv[] = [...kvs].map((kv) => [kv.key, kv.value, kv.createRevision, kv.modRevision]);
  const body = encodeRecord(Buffer.from(JSON.stringify({ revision, kvs: rows }), "utf8"));
  const tmp = join(dir, SNAPSHOT_FILE + ".tmp");
  const fh = await open(tmp, "w", 0o600);
  try {
    await fh.writeFile(body);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, join(dir, SNAPSHOT_FILE));
  await syncDir(dir);
  return rows.length;
}

/** fsync on a directory: makes created, renamed and removed entries durable. */
export async function syncDir(dir: string): Promise<void> {
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
