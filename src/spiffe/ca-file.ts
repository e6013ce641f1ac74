/**
 * Where the SPIFFE CA's root keys live: one file, `<state dir>/spiffe/ca.json`, mode 0600 in a
 * 0700 directory, on the issuing node only.
 *
 * Why a file and not the cluster store encrypted with a key given to the agent: the embedded store
 * is itself a file in the same state directory (encryption would add a second key to keep next to
 * it, nothing else), and in etcd every node's role reads `membrane/`, so an encrypted root key
 * would sit on every node and in every etcd backup, its safety resting on one more secret handed
 * to every issuer. A file keeps the key off the network and out of backups of the store; in a
 * cluster, each issuing node keeps its own root here and publishes only its root certificate
 * (public) for the bundle (see provider.ts).
 *
 * Written atomically (temporary file created 0600 with O_EXCL, fsync, rename). Read back only if
 * it is a regular file owned by this user with no group/other permission bits: anything else is
 * refused, naming the file (fail closed: the agent does not start with a key others could read).
 */
import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { MembraneError } from "../errors.js";

export type RootState = "prepared" | "active" | "retiring";

export interface StoredRoot {
  readonly state: RootState;
  /** DER, base64. */
  readonly cert: string;
  /** PKCS#8 DER, base64: the secret. */
  readonly key: string;
  /** prepared: when it starts signing (ms since epoch). */
  readonly activateAt?: number;
  /** retiring: when it leaves the bundle (ms since epoch). */
  readonly dropAt?: number;
}

export interface StoredCa {
  readonly version: 1;
  readonly trustDomain: string;
  readonly roots: readonly StoredRoot[];
}

const MAX_FILE = 64 * 1024;

export class CaFile {
  readonly path: string;
  constructor(readonly dir: string) {
    this.path = join(dir, "ca.json");
  }

  /** The stored CA, or undefined when there is no file yet. */
  async load(): Promise<StoredCa | undefined> {
    const st = await lstat(this.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return undefined;
      throw this.fail(`cannot stat it: ${e.message}`, e);
    });
    if (!st) return undefined;
    if (!st.isFile()) throw this.fail("it is not a regular file (a link or something else)");
    if (process.getuid && st.uid !== process.getuid()) throw this.fail(`it is owned by uid ${st.uid}, not by this agent's user`); // prettier-ignore
    if ((st.mode & 0o077) !== 0) {
      throw this.fail(
        `its mode is ${(st.mode & 0o777).toString(8)}: group or others may read the root key (want 600)`,
      );
    }
    if (st.size > MAX_FILE) throw this.fail(`it is larger than ${MAX_FILE} bytes`);
    const text = await readFile(this.path, "utf8");
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch {
      throw this.fail("it is not valid JSON"); // no cause: V8 quotes the text, i.e. the key, in it
    }
    return this.check(v);
  }

  async save(ca: StoredCa): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `.ca.json.${randomBytes(6).toString("hex")}`);
    const fh = await open(tmp, "wx", 0o600);
    try {
      await fh.writeFile(JSON.stringify(ca));
      await fh.sync();
    } catch (e) {
      await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      throw this.fail("cannot write it", e);
    }
    await fh.close();
    await rename(tmp, this.path);
  }

  private check(v: unknown): StoredCa {
    const o = v as Partial<StoredCa> | null;
    if (
      !o ||
      typeof o !== "object" ||
      o.version !== 1 ||
      typeof o.trustDomain !== "string" ||
      !Array.isArray(o.roots)
    ) {
      throw this.fail("it is not a version 1 CA file (version, trustDomain, roots)");
    }
    o.roots.forEach((r: Partial<StoredRoot>, i) => {
      const ok =
        r &&
        (r.state === "prepared" || r.state === "active" || r.state === "retiring") &&
        typeof r.cert === "string" &&
        typeof r.key === "string" &&
        (r.activateAt === undefined || Number.isFinite(r.activateAt)) &&
        (r.dropAt === undefined || Number.isFinite(r.dropAt));
      if (!ok) throw this.fail(`roots[${i}] is malformed (state, cert, key, activateAt, dropAt)`);
    });
    return o as StoredCa;
  }

  private fail(why: string, cause?: unknown): MembraneError {
    return new MembraneError("SPIFFE_CA_FAILED", `Cannot use the SPIFFE CA file ${this.path}: ${why}`, {
      ...(cause !== undefined ? { cause } : {}),
      hint: "The file holds the trust domain's root keys: keep it 0600, owned by the agent's user",
    });
  }
}
