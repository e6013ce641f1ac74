/**
 * The command line of every benchmark script: each declares its flags (name,
 * value kind, default, one line of help), and `benchArgs` is the first thing
 * its main does, before it creates anything.
 *
 *   argv --util.parseArgs--> tokens --checked against the declaration--> typed values --> the script
 *     -h, --help     the usage (its own `node dist/bench/<script>.js` line, every flag with its default,
 *                    what it measures, whether it needs root) on stdout, exit 0
 *     --help-json    the declaration as JSON (what `npm run bench` reads to route flags), exit 0;
 *                    with other flags, only once they are valid (how it checks the values it routes)
 *     an unknown flag, a bad or missing value, a stray argument: the error naming it and the
 *                    valid flags on stderr, exit 2
 *
 * parseBench is the pure part (tested without a process); benchArgs prints and exits.
 */
import { parseArgs } from "node:util";
import { isMembraneError, MembraneError } from "../src/errors.js";
import { usageText, type Usage } from "./cli-usage.js";

/** One flag: how parseArgs reads it, how the usage shows it, and how its value is checked. */
export interface Flag<T> {
  readonly kind: "boolean" | "string";
  readonly help: string;
  /** The value's name in the usage (`N`, `C,S`, `DIR`); "" for a boolean. */
  readonly value: string;
  /** The default as the usage shows it ("off", "300", "300; 100 with --quick"). */
  readonly shown: string;
  /** The value when the flag is not given. */
  readonly initial: T;
  /** Converts a given value; throws an Error whose message says what to give instead. */
  readonly parse: (raw: string) => T;
}

/** A script's flags by name (`T` appears only in outputs: a Flag<number> is a Flag<unknown>). */
export type FlagMap = Readonly<Record<string, Flag<unknown>>>;
export type FlagValues<F extends FlagMap> = {
  readonly [K in keyof F]: F[K] extends Flag<infer T> ? T : never;
};

/** Positional arguments, for the scripts that take them (policy-core's sizes, a child's ports). */
export interface ArgsSpec {
  /** As the usage line shows them: "<endpoints> <policies>", "[events]". */
  readonly usage: string;
  readonly help: string;
  readonly min: number;
  readonly max: number;
  /** What is wrong with them, or undefined (called once their count is right). */
  readonly check?: (args: readonly string[]) => string | undefined;
}

export interface BenchSpec<F extends FlagMap> extends Usage {
  readonly flags: F;
  readonly args?: ArgsSpec;
}

export type Parsed<F extends FlagMap> =
  | { readonly kind: "help" }
  | { readonly kind: "help-json" }
  | { readonly kind: "run"; readonly flags: FlagValues<F>; readonly args: readonly string[] };

interface Common {
  readonly help: string;
}

/** A switch: on when given, off otherwise. */
export function flag(help: string): Flag<boolean> {
  return { kind: "boolean", help, value: "", shown: "off", initial: false, parse: () => true };
}

/** A whole number in [min, max]; without a default, undefined when not given (the script picks one). */
export function int(o: Common & { min: number; max: number; default: number }): Flag<number>;
export function int(o: Common & { min: number; max: number; shown: string }): Flag<number | undefined>;
export function int(
  o: Common & { min: number; max: number; default?: number; shown?: string },
): Flag<number | undefined> {
  return {
    kind: "string",
    help: o.help,
    value: "N",
    shown: o.shown ?? String(o.default),
    initial: o.default,
    parse: (raw) => {
      const n = /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(n) || n < o.min || n > o.max)
        throw new Error(`give a whole number from ${o.min} to ${o.max}`);
      return n;
    },
  };
}

/** A number (seconds, a rate) in [min, max]. */
export function num(o: Common & { min: number; max: number; default: number; value?: string }): Flag<number> {
  return {
    kind: "string",
    help: o.help,
    value: o.value ?? "N",
    shown: String(o.default),
    initial: o.default,
    parse: (raw) => {
      const n = raw.trim() === "" ? NaN : Number(raw);
      if (!Number.isFinite(n) || n < o.min || n > o.max)
        throw new Error(`give a number from ${o.min} to ${o.max}`);
      return n;
    },
  };
}

/** One of a few words; without a default, undefined when not given. */
export function choice<const C extends string>(o: Common & { choices: readonly C[]; default: C }): Flag<C>;
export function choice<const C extends string>(
  o: Common & { choices: readonly C[]; shown: string },
): Flag<C | undefined>;
export function choice<const C extends string>(
  o: Common & { choices: readonly C[]; default?: C; shown?: string },
): Flag<C | undefined> {
  return {
    kind: "string",
    help: o.help,
    value: o.choices.join("|"),
    shown: o.shown ?? String(o.default),
    initial: o.default,
    parse: (raw) => {
      const c = o.choices.find((x) => x === raw);
      if (c === undefined) throw new Error(`give one of ${o.choices.join(", ")}`);
      return c;
    },
  };
}

/** A string matching `pattern` (`what` says what it must be: "2-6 lower-case letters and digits"). */
export function text(
  o: Common & { value: string; default: string; pattern: RegExp; what: string },
): Flag<string>;
export function text(
  o: Common & { value: string; shown: string; pattern: RegExp; what: string },
): Flag<string | undefined>;
export function text(
  o: Common & { value: string; default?: string; shown?: string; pattern: RegExp; what: string },
): Flag<string | undefined> {
  return {
    kind: "string",
    help: o.help,
    value: o.value,
    shown: o.shown ?? String(o.default),
    initial: o.default,
    parse: (raw) => {
      if (!o.pattern.test(raw)) throw new Error(`give ${o.what}`);
      return raw;
    },
  };
}

/** Any other value: `parse` converts it or throws saying what to give. */
export function custom<T>(
  o: Common & { value: string; default: T; shown: string; parse: (raw: string) => T },
): Flag<T> {
  return { kind: "string", help: o.help, value: o.value, shown: o.shown, initial: o.default, parse: o.parse };
}

const flagList = (flags: FlagMap): string =>
  Object.keys(flags)
    .map((n) => `--${n}`)
    .join(", ") || "none";

function bad(spec: BenchSpec<FlagMap>, path: string, why: string): MembraneError {
  return new MembraneError("CLI_USAGE", `Cannot run ${spec.script}: ${why}`, {
    location: { path },
    hint: `its flags: ${flagList(spec.flags)}; see node dist/bench/${spec.script}.js --help`,
  });
}

/** A value that is another flag (`--rounds --quick`), not a value; negative numbers are values. */
const looksLikeFlag = (v: string): boolean => /^-(?![\d.])/.test(v);

/**
 * Reads argv against the declaration. --help/-h anywhere before `--` wins over everything else;
 * --help-json wins once the other flags are valid (its positional arguments are not required);
 * otherwise every flag must be declared and every value valid, or this throws a MembraneError
 * (CLI_USAGE) naming the flag (location.path) and listing the valid ones.
 */
export function parseBench<F extends FlagMap>(spec: BenchSpec<F>, argv: readonly string[]): Parsed<F> {
  const end = argv.indexOf("--");
  const before = end < 0 ? argv : argv.slice(0, end);
  if (before.includes("--help") || before.includes("-h")) return { kind: "help" };
  // --help-json checks the other flags first: `npm run bench` asks with the flags it routes.
  if (before.includes("--help-json")) {
    read(
      spec,
      argv.filter((a, i) => a !== "--help-json" || (end >= 0 && i > end)),
      false,
    );
    return { kind: "help-json" };
  }
  return { kind: "run", ...read(spec, argv, true) };
}

function read<F extends FlagMap>(
  spec: BenchSpec<F>,
  argv: readonly string[],
  withArgs: boolean,
): { flags: FlagValues<F>; args: string[] } {
  const flags: FlagMap = spec.flags;
  const options = Object.fromEntries(Object.entries(flags).map(([n, f]) => [n, { type: f.kind }]));
  const { tokens } = parseArgs({
    args: [...argv],
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const values: Record<string, unknown> = Object.fromEntries(
    Object.entries(flags).map(([n, f]) => [n, f.initial]),
  );
  const args: string[] = [];
  for (const t of tokens) {
    if (t.kind === "positional") args.push(t.value);
    if (t.kind !== "option") continue;
    const f = Object.hasOwn(flags, t.name) ? flags[t.name] : undefined;
    if (f === undefined) throw bad(spec, t.rawName, `${t.rawName} is not one of its flags`);
    if (f.kind === "boolean") {
      if (t.value !== undefined)
        throw bad(spec, t.rawName, `${t.rawName} takes no value (give ${t.rawName} alone)`);
      values[t.name] = true;
      continue;
    }
    if (t.value === undefined || (t.inlineValue === false && looksLikeFlag(t.value)))
      throw bad(spec, t.rawName, `${t.rawName} needs a value (${t.rawName}=${f.value})`);
    try {
      values[t.name] = f.parse(t.value);
    } catch (e) {
      throw bad(spec, t.rawName, `${t.rawName}=${t.value}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const a = spec.args;
  if (a === undefined && args.length > 0)
    throw bad(spec, args[0] ?? "", `it takes no arguments, only flags (got ${JSON.stringify(args[0])})`);
  if (a !== undefined && withArgs) {
    if (args.length < a.min || args.length > a.max)
      throw bad(spec, a.usage, `give ${a.usage} (${a.help}); got ${args.length} argument(s)`);
    const problem = a.check?.(args);
    if (problem !== undefined) throw bad(spec, a.usage, problem);
  }
  return { flags: values as FlagValues<F>, args };
}

/** The declaration as `--help-json` prints it: what `npm run bench` needs to route flags. */
export function declaration(spec: BenchSpec<FlagMap>): BenchDeclaration {
  return {
    script: spec.script,
    root: spec.root,
    flags: Object.entries(spec.flags).map(([name, f]) => ({
      name,
      kind: f.kind,
      value: f.value,
      default: f.shown,
    })),
    ...(spec.args === undefined ? {} : { args: spec.args.usage }),
  };
}

export interface BenchDeclaration {
  readonly script: string;
  readonly root: string | false;
  readonly flags: readonly { name: string; kind: "boolean" | "string"; value: string; default: string }[];
  readonly args?: string;
}

/**
 * The script's command line, parsed; or the usage / declaration printed and exit 0; or the error
 * printed and exit 2. Call it first in main: nothing may be created before it returns.
 */
export function benchArgs<F extends FlagMap>(
  spec: BenchSpec<F>,
  argv: readonly string[] = process.argv.slice(2),
): { readonly flags: FlagValues<F>; readonly args: readonly string[] } {
  let p: Parsed<F>;
  try {
    p = parseBench(spec, argv);
  } catch (e) {
    if (!isMembraneError(e)) throw e;
    process.stderr.write(`${e.describe()}\n`);
    process.exit(2);
  }
  if (p.kind === "help") {
    process.stdout.write(usageText(spec, spec.flags, spec.args));
    process.exit(0);
  }
  if (p.kind === "help-json") {
    process.stdout.write(`${JSON.stringify(declaration(spec))}\n`);
    process.exit(0);
  }
  return p;
}

/** For a child a benchmark forks (load.js, proxy-server.js, ...): without an IPC channel, say so and exit 2. */
export function forkedOnly(script: string, by: string): void {
  if (process.send !== undefined) return;
  process.stderr.write(`Cannot run ${script}: ${by} forks it with an IPC channel; run ${by} instead\n`);
  process.exit(2);
}
