/**
 * Expands the FILE|DIR arguments of `membrane policy test` into a list of
 * scenario files: files as given, directories walked recursively for
 * *.yaml and *.yml, sorted. In a directory, policy manifests (files that
 * start with `apiVersion:` or `kind:`, such as examples/policies/ for
 * `membrane apply -f`) are not scenarios and are passed over.
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
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
    else if (ent.isFile() && /\.ya?ml$/.test(ent.name) && !isManifest(p)) out.push(p);
  }
  return out;
}

/** Does the file's first line of content start a Kubernetes-style resource (not a scenario)? */
function isManifest(file: string): boolean {
  let head: string;
  try {
    head = readFileSync(file, "utf8").slice(0, 4096);
  } catch {
    return false; // let the scenario loader report it
  }
  const first = head.split("\n").find((l) => !/^\s*(#.*)?$/.test(l) && !/^---\s*$/.test(l));
  return first !== undefined && /^(apiVersion|kind):/.test(first);
}
