/**
 * The usage a benchmark script prints for --help (bench/cli.ts): its own command line, what it
 * measures, whether it needs root, every flag with its default, its arguments and environment.
 */
import type { ArgsSpec, FlagMap } from "./cli.js";

/** What a script says of itself besides its flags. */
export interface Usage {
  /** The file's name: `node dist/bench/<script>.js`. */
  readonly script: string;
  /** The name `npm run bench -- <runner>` knows it by, when it has one. */
  readonly runner?: string;
  /** What it measures and prints (a sentence or two). */
  readonly measures: string;
  /** Why it needs root (namespaces, nftables, BPF), or false. */
  readonly root: string | false;
  /** Environment variables it reads, with their help. */
  readonly env?: Readonly<Record<string, string>>;
  /** More lines: tools it needs, internal modes, where its figures are recorded. */
  readonly notes?: readonly string[];
}

const WIDTH = 100;

/** Words joined into lines no wider than WIDTH, each after `indent`. */
function wrap(words: readonly string[], first: string, indent: string): string[] {
  const lines: string[] = [];
  let line = first;
  for (const w of words) {
    if (line.length + 1 + w.length > WIDTH && line.trim() !== first.trim()) {
      lines.push(line);
      line = indent + w;
    } else line = line.endsWith(" ") || line === "" ? line + w : `${line} ${w}`;
  }
  lines.push(line);
  return lines;
}

function table(rows: readonly (readonly [string, string])[]): string[] {
  const w = Math.min(28, Math.max(...rows.map(([l]) => l.length)) + 2);
  return rows.flatMap(([l, r]) => {
    const head = `  ${l.padEnd(w)}`;
    return head.length > w + 2 ? [`  ${l}`, ...wrap(r.split(" "), " ".repeat(w + 2), " ".repeat(w + 2))]
      : wrap(r.split(" "), head, " ".repeat(w + 2)); // prettier-ignore
  });
}

export function usageText(u: Usage, flags: FlagMap, args: ArgsSpec | undefined): string {
  const synopsis = [
    ...Object.entries(flags).map(([n, f]) => (f.kind === "boolean" ? `[--${n}]` : `[--${n}=${f.value}]`)),
    ...(args === undefined ? [] : [args.usage]),
  ];
  const cmd = `usage: node dist/bench/${u.script}.js`;
  const lines = wrap(synopsis, cmd, " ".repeat(cmd.length + 1));
  if (u.runner !== undefined) lines.push(`       npm run bench -- ${u.runner} [flags]`);
  lines.push("", ...wrap(u.measures.split(" "), "", ""));
  lines.push(`Needs root: ${u.root === false ? "no" : `yes (${u.root})`}`);
  for (const n of u.notes ?? []) lines.push(...wrap(n.split(" "), "", "  "));
  if (args !== undefined) lines.push("", "Arguments:", ...table([[args.usage, args.help]]));
  const rows: [string, string][] = Object.entries(flags).map(([n, f]) => [
    f.kind === "boolean" ? `--${n}` : `--${n}=${f.value}`,
    `${f.help} (default: ${f.shown})`,
  ]);
  rows.push(["-h, --help", "print this usage and exit; runs and creates nothing"]);
  rows.push([
    "--help-json",
    "print the flags as JSON and exit, once any other flags given are valid (npm run bench asks this way)",
  ]);
  lines.push("", "Flags (--flag=value or --flag value):", ...table(rows));
  const env = Object.entries(u.env ?? {});
  if (env.length > 0) lines.push("", "Environment:", ...table(env));
  return `${lines.join("\n")}\n`;
}
