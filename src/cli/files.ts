/**
 * Files the CLI reads: the FILE|DIR arguments of `membrane policy test`
 * expanded into scenario files (directories walked recursively for *.yaml
 * and *.yml, sorted; in a directory, policy manifests — files that start
 * with `apiVersion:` or `kind:`, such as examples/policies/ for
 * `membrane apply -f` — are not scenarios and are passed over), and the
 * bounded reading of one input file or stdin.
 */
import { closeSync, fstatSync, openSync, readdirSync, readSync, statSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../errors.js";
import { LIMITS, limitError } from "../policy/api/limits.js";

/**
 * Reads a policy or scenario file (`-` is standard input) as UTF-8, refusing
 * more than LIMITS.bytes with INPUT_LIMIT_EXCEEDED before reading it all: a
 * large regular file is refused from its size, a pipe or device (`/dev/zero`)
 * after LIMITS.bytes + 1 bytes. Other failures are CLI_USAGE naming the file.
 */
export function readInputFile(file: string): string {
  const name = file === "-" ? "<stdin>" : file;
  let fd: number;
  try {
    fd = file === "-" ? 0 : openSync(file, "r");
  } catch (e) {
    throw cannotRead(file, e);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory())
      throw cannotRead(file, Object.assign(new Error("is a directory"), { code: "EISDIR" }));
    if (st.isFile() && st.size > LIMITS.bytes) throw limitError("bytes", name);
    const chunks: Buffer[] = [];
    let total = 0;
    const buf = Buffer.alloc(64 * 1024);
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === "EAGAIN") continue; // a non-blocking stdin
        if ((e as NodeJS.ErrnoException).code === "EOF") break;
        throw cannotRead(file, e);
      }
      if (n === 0) break;
      total += n;
      if (total > LIMITS.bytes) throw limitError("bytes", name);
      chunks.push(Buffer.from(buf.subarray(0, n)));
    }
    return Buffer.concat(chunks).toString("utf8");
  } finally {
    if (file !== "-") closeSync(fd);
  }
}

function cannotRead(file: string, e: unknown): MembraneError {
  if (e instanceof MembraneError) return e;
  const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  return new MembraneError("CLI_USAGE", `Cannot read ${file}: ${why}`, { location: { file }, cause: e });
}

export function expandScenarioPaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new MembraneError("CLI_USAGE", `Cannot read ${p}: no such file or directory`, {
        location: { file: p },
        hint: "pass scenario files or directories that contain *.yaml files",
      });
    }
    if (st.isDirectory()) {
      const found = walk(p, []).sort();
      if (found.length === 0) {
        throw new MembraneError("CLI_USAGE", `Cannot test ${p}: the directory has no *.yaml or *.yml files`, {
          location: { file: p },
          hint: "scenario files end in .yaml or .yml",
        });
      }
      out.push(...found);
    } else {
      out.push(p);
    }
  }
  return out;
}

function walk(dir: string, out: string[]): string[] {
  for (const ent of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, ent.name);
    if (ent.isDirectory()) walk(p, out);
    else if (ent.isFile() && /\.ya?ml$/.test(ent.name) && !isManifest(p)) out.push(p);
  }
  return out;
}

/** Does the file's first line of content start a Kubernetes-style resource (not a scenario)? */
function isManifest(file: string): boolean {
  let head: string;
  try {
    // Only the first 4 KiB: a directory may hold anything, of any size.
    const fd = openSync(file, "r");
    try {
      const buf = Buffer.alloc(4096);
      head = buf.toString("utf8", 0, readSync(fd, buf, 0, buf.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return false; // let the scenario loader report it
  }
  const first = head.split("\n").find((l) => !/^\s*(#.*)?$/.test(l) && !/^---\s*$/.test(l));
  return first !== undefined && /^(apiVersion|kind):/.test(first);
}
