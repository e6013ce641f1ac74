/**
 * Expands the FILE|DIR arguments of `membrane policy test` into a list of
 * scenario files: files as given, directories walked recursively for
 * *.yaml and *.yml, sorted.
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { MembraneError } from "../errors.js";

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
    else if (ent.isFile() && /\.ya?ml$/.test(ent.name)) out.push(p);
  }
  return out;
}
