/**
 * Which benchmark gets which flag, for `npm run bench` (bench/index.ts): pure, from the command
 * line and the flags each script declares (its --help-json, bench/cli.ts).
 *
 *   argv --selected()--> the benchmarks to run (the named ones, or every one not run only when named)
 *        --route(declarations)--> per benchmark, only the flags it declares, as --name=value / --name
 *   A word that is no benchmark's name, or a flag none of them declares: a CLI_USAGE error naming it.
 */
import { parseArgs } from "node:util";
import { MembraneError } from "../src/errors.js";
import type { BenchDeclaration } from "./cli.js";
import { RUNNERS, runner, type RunnerEntry } from "./registry.js";

export interface Step {
  readonly entry: RunnerEntry;
  /** The flags for its script, each as `--name=value` or `--name`. */
  readonly flags: readonly string[];
}

const NAMES = RUNNERS.map((r) => r.name).join(", ");

function usage(path: string, why: string): MembraneError {
  return new MembraneError("CLI_USAGE", `Cannot run the benchmarks: ${why}`, {
    location: { path },
    hint: "npm run bench -- --help lists the benchmarks; node dist/bench/<script>.js --help lists a script's flags",
  });
}

/** The benchmarks argv asks for. */
export function selected(argv: readonly string[]): RunnerEntry[] {
  const words = argv.filter((a) => !a.startsWith("-"));
  const named = RUNNERS.filter((r) => words.includes(r.name));
  return named.length > 0 ? named : RUNNERS.filter((r) => r.onlyWhenNamed !== true);
}

/**
 * Routes every flag of argv to the selected benchmarks that declare it (`decl` by script). Throws
 * (CLI_USAGE) for a word that names no benchmark and is no flag's value, a flag none of them
 * declares, a missing value, or a value given to a switch. Values are checked by the scripts.
 */
export function route(
  argv: readonly string[],
  entries: readonly RunnerEntry[],
  decl: ReadonlyMap<string, BenchDeclaration>,
): Step[] {
  const kinds = new Map<string, "boolean" | "string">();
  for (const e of entries)
    for (const f of decl.get(e.script)?.flags ?? []) {
      if ((kinds.get(f.name) ?? f.kind) !== f.kind)
        throw usage(
          `--${f.name}`,
          `--${f.name} is a switch for one benchmark and takes a value for another: name one`,
        );
      kinds.set(f.name, f.kind);
    }
  const options = Object.fromEntries([...kinds].map(([n, k]) => [n, { type: k }]));
  const { tokens } = parseArgs({
    args: [...argv],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const per = new Map<string, string[]>(entries.map((e) => [e.script, []]));
  const names = entries.map((e) => e.name).join(", ");
  for (const t of tokens) {
    if (t.kind === "positional") {
      if (runner(t.value) === undefined)
        throw usage(t.value, `${t.value} is not a benchmark (names: ${NAMES})`);
      continue;
    }
    if (t.kind !== "option") continue;
    const kind = kinds.get(t.name);
    if (kind === undefined) {
      const theirs = [...kinds.keys()].map((n) => `--${n}`).join(", ") || "none";
      throw usage(t.rawName, `${t.rawName} is not a flag of ${names} (their flags: ${theirs})`);
    }
    if (kind === "boolean" && t.value !== undefined)
      throw usage(t.rawName, `${t.rawName} takes no value (give ${t.rawName} alone)`);
    if (
      kind === "string" &&
      (t.value === undefined || (t.inlineValue === false && /^-(?![\d.])/.test(t.value)))
    )
      throw usage(t.rawName, `${t.rawName} needs a value (${t.rawName}=...)`);
    const arg = t.value === undefined ? `--${t.name}` : `--${t.name}=${t.value}`;
    for (const e of entries)
      if (decl.get(e.script)?.flags.some((f) => f.name === t.name)) per.get(e.script)?.push(arg);
  }
  return entries.map((entry) => ({ entry, flags: per.get(entry.script) ?? [] }));
}
