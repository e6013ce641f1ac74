/**
 * The map in DESIGN.md, checked: which room may import which. Reads the
 * TypeScript sources' import lines (static and dynamic) as text.
 *
 *   pure core (policy/, labels/, identity/, ipcache/): no I/O, no agent or kernel
 *   proxy/, observe/: never the datapath or the agent (shared constants: abi/)
 *   src/: no import cycles
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SRC = join(ROOT, "src");

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith(".ts")) out.push(p);
  }
  return out;
}

/**
 * Every module specifier a file imports or re-exports; `runtime` leaves out
 * `import type` / `export type` statements, which the compiler erases.
 */
export function specifiers(text: string, runtime = false): string[] {
  const out: string[] = [];
  const re =
    /(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"|(?:^|\n)\s*import\s+"([^"]+)"|\bimport\(\s*"([^"]+)"\s*\)/g;
  for (const m of text.matchAll(re)) {
    if (runtime && /^\s*(?:import|export)\s+type\b/.test(m[0])) continue;
    out.push((m[1] ?? m[2] ?? m[3]) as string);
  }
  return out;
}

interface Mod {
  readonly file: string; // relative to src/, e.g. "policy/engine.ts"
  readonly local: string[]; // resolved local imports, relative to src/
  readonly runtimeLocal: string[]; // the same without type-only imports
  readonly packages: string[];
}

function modules(): Mod[] {
  return walk(SRC).map((abs) => {
    const text = readFileSync(abs, "utf8");
    const toSrc = (s: string): string => relative(SRC, resolve(dirname(abs), s)).replace(/\.js$/, ".ts");
    const all = specifiers(text);
    return {
      file: relative(SRC, abs),
      local: all.filter((s) => s.startsWith(".")).map(toSrc),
      runtimeLocal: specifiers(text, true)
        .filter((s) => s.startsWith("."))
        .map(toSrc),
      packages: all.filter((s) => !s.startsWith(".")),
    };
  });
}

const room = (f: string): string => (f.includes("/") ? (f.split("/")[0] as string) : f);
const PURE = new Set(["policy", "labels", "identity", "ipcache"]);
const PURE_MAY_IMPORT = new Set([...PURE, "errors.ts"]);
const PURE_PACKAGES = new Set(["yaml", "re2js", "ipaddr.js"]);

describe("architecture: the rooms of DESIGN.md", () => {
  const mods = modules();

  test("the import reader sees static, re-export, side-effect and dynamic imports", () => {
    const text = [
      'import { a } from "./a.js";',
      'import type { B } from "../b.js";',
      'export { c } from "./c.js";',
      'import "./d.js";',
      'const e = await import("./e.js");',
      'import {\n  f,\n  g,\n} from "node:fs";',
    ].join("\n");
    assert.deepEqual(specifiers(text), ["./a.js", "../b.js", "./c.js", "./d.js", "./e.js", "node:fs"]);
    assert.ok(mods.length > 100, `read ${mods.length} source files`);
  });

  test("the policy core (policy/, labels/, identity/, ipcache/) imports no agent, kernel or I/O module", () => {
    const bad: string[] = [];
    for (const m of mods.filter((x) => PURE.has(room(x.file)))) {
      for (const l of m.local) if (!PURE_MAY_IMPORT.has(room(l))) bad.push(`${m.file} -> ${l}`);
      for (const p of m.packages) if (!PURE_PACKAGES.has(p)) bad.push(`${m.file} -> ${p}`);
    }
    assert.deepEqual(bad, []);
  });

  test("the proxy and the observer reach the kernel contract through abi/, never datapath/ or agent/", () => {
    const bad = mods
      .filter((m) => room(m.file) === "proxy" || room(m.file) === "observe")
      .flatMap((m) =>
        m.local
          .filter((l) => ["datapath", "agent", "cli", "scenario"].includes(room(l)))
          .map((l) => `${m.file} -> ${l}`),
      );
    assert.deepEqual(bad, []);
  });

  test("no import cycles between source files (at run time: type-only imports are erased)", () => {
    const graph = new Map(mods.map((m) => [m.file, m.runtimeLocal]));
    const state = new Map<string, 1 | 2>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 2) return;
      if (state.get(f) === 1) {
        cycles.push([...path.slice(path.indexOf(f)), f].join(" -> "));
        return;
      }
      state.set(f, 1);
      for (const n of graph.get(f) ?? []) if (graph.has(n)) visit(n, [...path, f]);
      state.set(f, 2);
    };
    for (const f of graph.keys()) visit(f, []);
    assert.deepEqual(cycles, []);
  });
});
