/**
 * The struct offsets our BPF program generators need, cached across agent
 * starts so that the 5.4 MB kernel BTF is parsed once per kernel, not once
 * per start (parsing it took 0.5 s quiet, 1-3 s under load).
 *
 *   withBtf(compute) --key matches, every field cached--> compute(cached offsets)
 *                    --otherwise--> parseBtf(whole file) -> compute(recording) -> cache file rewritten
 *
 * The key: the kernel's GNU build id (/sys/kernel/notes), the BTF's size and
 * a SHA-256 of its first 64 KiB (header, string and type starts); a kernel
 * without a build id note hashes the whole BTF instead (~20 ms). A cache whose
 * key differs, that does not parse, or whose entries are out of range is
 * ignored and rewritten: the answer is always what the BTF says.
 *
 * The file lives in /run/membrane-btf (tmpfs: a reboot, the only way to change
 * kernels, empties it), directory 0700 and file 0600, written whole then
 * renamed. Only root can change it; a changed offset makes the programs read
 * the wrong kernel memory through bpf_probe_read (checked by the verifier:
 * wrong values, never a crash).
 */
import { createHash } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { parseBtf, type BtfLookup, type FieldLayout } from "./btf.js";
import { MembraneError } from "../../errors.js";

export interface BtfCacheParams {
  readonly btfPath?: string;
  readonly notesPath?: string;
  /** Where the cache file is kept (default /run/membrane-btf; "" disables it). */
  readonly cacheDir?: string;
}

const VERSION = 1;
const FILE = "btf-offsets.json";
const HEAD = 64 * 1024;

/** What happened, for tests and the status: "hit" (no BTF parsed) or "miss" (parsed, cache rewritten). */
export let lastBtfCacheResult: "hit" | "miss" | "off" = "off";

class Miss extends Error {}

/** The GNU build id in an ELF notes blob, as hex; undefined when absent. */
export function buildId(notes: Buffer): string | undefined {
  let at = 0;
  while (at + 12 <= notes.length) {
    const namesz = notes.readUInt32LE(at);
    const descsz = notes.readUInt32LE(at + 4);
    const type = notes.readUInt32LE(at + 8);
    const name = at + 12;
    const desc = name + ((namesz + 3) & ~3);
    const next = desc + ((descsz + 3) & ~3);
    if (next > notes.length || next <= at) return undefined;
    if (type === 3 && namesz === 4 && notes.toString("latin1", name, name + 3) === "GNU")
      return notes.toString("hex", desc, desc + descsz);
    at = next;
  }
  return undefined;
}

function cacheKey(btfPath: string, notesPath: string): string {
  const size = statSync(btfPath).size;
  let id: string | undefined;
  try {
    id = buildId(readFileSync(notesPath));
  } catch {
    id = undefined;
  }
  const h = createHash("sha256");
  if (id === undefined) h.update(readFileSync(btfPath));
  else {
    const fd = openSync(btfPath, "r");
    try {
      const b = Buffer.alloc(Math.min(HEAD, size));
      let n = 0;
      while (n < b.length) {
        const r = readSync(fd, b, n, b.length - n, n);
        if (r <= 0) break;
        n += r;
      }
      h.update(b.subarray(0, n));
    } finally {
      closeSync(fd);
    }
  }
  return `${id ?? "no-build-id"}:${size}:${h.digest("hex")}`;
}

type Entries = Record<string, FieldLayout>;

function readCache(file: string, key: string): Entries {
  try {
    const o = JSON.parse(readFileSync(file, "utf8")) as {
      version?: unknown;
      key?: unknown;
      fields?: unknown;
    };
    if (o.version !== VERSION || o.key !== key || typeof o.fields !== "object" || o.fields === null)
      return {};
    const out: Entries = {};
    for (const [k, v] of Object.entries(o.fields as Record<string, unknown>)) {
      const f = v as { offset?: unknown; size?: unknown };
      const ok = (x: unknown): x is number =>
        Number.isInteger(x) && (x as number) >= 0 && (x as number) < 1 << 24;
      if (!ok(f.offset) || !ok(f.size)) return {};
      out[k] = { offset: f.offset, size: f.size };
    }
    return out;
  } catch {
    return {};
  }
}

/** Runs `compute` on the kernel's struct offsets, from the cache when it holds every one asked for. */
export function withBtf<T>(compute: (btf: BtfLookup) => T, p: BtfCacheParams = {}): T {
  const btfPath = p.btfPath ?? "/sys/kernel/btf/vmlinux";
  const dir = p.cacheDir ?? "/run/membrane-btf";
  let key = "";
  let cached: Entries = {};
  const file = dir === "" ? "" : join(dir, FILE);
  if (file !== "") {
    try {
      key = cacheKey(btfPath, p.notesPath ?? "/sys/kernel/notes");
      cached = readCache(file, key);
    } catch {
      key = "";
    }
  }
  const fromCache: BtfLookup = {
    offsetOf: (s, f) => {
      const e = cached[`${s}.${f}`];
      if (!e) throw new Miss();
      return e;
    },
    structSize: (s) => {
      const e = cached[`${s}#size`];
      if (!e) throw new Miss();
      return e.size;
    },
  };
  if (key !== "") {
    try {
      const r = compute(fromCache);
      lastBtfCacheResult = "hit";
      return r;
    } catch (e) {
      if (!(e instanceof Miss)) throw e;
    }
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(btfPath);
  } catch (e) {
    throw new MembraneError(
      "RUNTIME_BTF_INVALID",
      `Cannot read the kernel's BTF: ${btfPath}: ${(e as Error).message}`,
    );
  }
  const btf = parseBtf(bytes);
  const seen: Entries = { ...cached };
  const r = compute({
    offsetOf: (s, f) => (seen[`${s}.${f}`] = btf.offsetOf(s, f)),
    structSize: (s) => (seen[`${s}#size`] = { offset: 0, size: btf.structSize(s) }).size,
  });
  lastBtfCacheResult = key === "" ? "off" : "miss";
  if (key !== "") {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const tmp = join(dir, `${FILE}.${process.pid}.tmp`);
      writeFileSync(tmp, JSON.stringify({ version: VERSION, key, fields: seen }), { mode: 0o600 });
      renameSync(tmp, join(dir, FILE));
    } catch {
      // A cache that cannot be written costs the next start a parse, nothing more.
    }
  }
  return r;
}
