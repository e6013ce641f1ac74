/**
 * `npm run bench`: every benchmark, one JSON line each (or the named ones).
 *
 *   argv --selected (route.ts)--> benchmarks --their flags (each script's --help-json, asked in
 *   the sandbox: sandbox.ts)--> route: each gets only the flags it declares --> the scripts check
 *   the values (--help-json with the flags, in the sandbox) --> run one after another
 *
 * A flag no named benchmark declares, a word that names none, or a value a script refuses stops
 * the run before anything is measured or created (exit 2). The policy-core runs each size in its
 * own process so that peak memory is that configuration's alone. Benchmarks of the kernel path
 * need root and compare with and without Membrane side by side in the same run.
 *
 *   npm run bench                                        every benchmark (hours)
 *   npm run bench -- scale --endpoints=250,1000 --quick  one, with its flags
 *   npm run bench -- --help                              the list (runs nothing)
 */
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { isMembraneError } from "../src/errors.js";
import type { BenchDeclaration } from "./cli.js";
import { RUNNERS, type RunnerEntry } from "./registry.js";
import { route, selected, type Step } from "./route.js";
import { askSandboxed, sandboxFlags } from "./sandbox.js";

const here = (script: string): string => fileURLToPath(new URL(`./${script}.js`, import.meta.url));

function help(): string {
  const w = Math.max(...RUNNERS.map((r) => r.name.length)) + 2;
  return `usage: npm run bench -- [NAME...] [--<flag>=<value>...]    (or: node dist/bench/index.js ...)

Runs every benchmark (root for the kernel ones; hours in all), or only the named ones; JSON lines on
stdout. Each benchmark gets only the flags its script declares; a flag none of the named ones takes,
or a bad value, stops the run before anything starts (exit 2).
Benchmarks (* only when named):
${RUNNERS.map((r) => `  ${(r.name + (r.onlyWhenNamed ? "*" : "")).padEnd(w)}${r.about}`).join("\n")}
Examples:
${RUNNERS.map((r) => `  npm run bench -- ${r.example}`).join("\n")}
Each benchmark's flags, defaults and needs: node dist/bench/<script>.js --help (e.g. dist/bench/scale.js).
Flags:
  -h, --help   print this list and exit; runs and creates nothing
Report the load average beside any figure: this machine is shared.
`;
}

function stop(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** The flags of each benchmark's script, asked in the sandbox (it cannot create anything). */
async function declarations(entries: readonly RunnerEntry[]): Promise<Map<string, BenchDeclaration>> {
  const out = new Map<string, BenchDeclaration>();
  const ask = async (e: RunnerEntry): Promise<void> => {
    const a = await askSandboxed(here(e.script), ["--help-json"]);
    try {
      out.set(e.script, JSON.parse(a.stdout) as BenchDeclaration);
    } catch {
      stop(
        `Cannot run the benchmarks: dist/bench/${e.script}.js did not declare its flags (exit ${a.code})\n${a.stderr}`,
      );
    }
  };
  // Two at a time: each is a node process loading its script's modules.
  for (let i = 0; i < entries.length; i += 2) await Promise.all(entries.slice(i, i + 2).map(ask));
  return out;
}

/** Each script checks the values it was given (--help-json with them: exit 2 names a bad one). */
async function checkValues(steps: readonly Step[]): Promise<void> {
  for (const s of steps) {
    if (s.flags.length === 0) continue;
    const a = await askSandboxed(here(s.entry.script), ["--help-json", ...s.flags]);
    if (a.code !== 0) stop(a.stderr.trimEnd());
  }
}

/** Run in the sandbox itself (a test), the runner starts its benchmarks in it too: they cannot create anything. */
const sandboxed = (process as { permission?: unknown }).permission !== undefined;

function child(script: string, args: readonly string[]): void {
  const node = [...(sandboxed ? sandboxFlags() : []), "--expose-gc"];
  const r = spawnSync(process.execPath, [...node, here(script), ...args], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  });
  if (r.status !== 0) {
    console.log(JSON.stringify({ bench: script, args, error: `exit ${r.status}` }));
    return;
  }
  process.stdout.write(r.stdout);
}

function run(s: Step): void {
  if (s.entry.name !== "policy-core") {
    if (existsSync(here(s.entry.script))) child(s.entry.script, s.flags);
    return;
  }
  for (const [eps, pols] of [
    [1000, 100],
    [1000, 1000],
    [10000, 100],
    [10000, 1000],
  ] as const)
    child("policy-core", [...s.flags, String(eps), String(pols)]);
  console.log(
    JSON.stringify({
      bench: "policy-core",
      targets: { "10000x1000 fullResolveMs": "< 5000", peakRssMiB: "< 1024", "incremental p99 ms": "< 20" },
    }),
  );
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(help());
    return;
  }
  const entries = selected(argv);
  // Only a command line with flags needs the declarations (a word that names nothing is refused without).
  const decl = argv.some((a) => a.startsWith("-")) ? await declarations(entries) : new Map();
  let steps: Step[];
  try {
    steps = route(argv, entries, decl);
  } catch (e) {
    if (!isMembraneError(e)) throw e;
    stop(e.describe());
  }
  await checkValues(steps);
  for (const s of steps) run(s);
}

await main();
