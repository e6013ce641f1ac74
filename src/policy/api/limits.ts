/**
 * Bounds on untrusted YAML (policy files, scenario files, API bodies).
 *
 *   text --size--> tokens --depth, documents--> AST --alias expansion--> walk --problems--> error
 *
 * Each limit is one constant here; crossing it is a MembraneError
 * INPUT_LIMIT_EXCEEDED naming the limit, its value and where (file:line).
 * The problem cap is not an error: a rejection lists the first
 * `problems` problems and then says how many more there were.
 */
import { type Issue, MembraneError } from "../../errors.js";

export const LIMITS = {
  /** Bytes of one policy or scenario file (UTF-8). */
  bytes: 2 << 20,
  /** Nesting of collections (block or flow), counted by the YAML parser's own stack. */
  depth: 64,
  /**
   * Nodes (collections and scalars) the YAML parser opens in one file. Memory
   * follows this, not bytes: 1 MiB of `[[]]` opens 500,000 collections and
   * took 700 MB of heap; a dense 2 MiB policy file opens about 230,000.
   */
  nodes: 250_000,
  /** YAML documents in one file. */
  documents: 1000,
  /** Nodes reached through aliases (`*name`) in one file, each alias counting the whole value it expands to. */
  aliasNodes: 10_000,
  /** Problems listed in one rejection (the rest are counted). */
  problems: 100,
} as const;

export type LimitName = keyof typeof LIMITS;

const WHAT: Record<Exclude<LimitName, "problems">, (limit: number) => string> = {
  bytes: (n) => `is larger than the limit of ${n} bytes (${n >> 20} MiB)`,
  depth: (n) => `nests collections deeper than the limit of ${n} levels`,
  nodes: (n) => `holds more than the limit of ${n} YAML nodes (collections and values)`,
  documents: (n) => `holds more than the limit of ${n} YAML documents`,
  aliasNodes: (n) => `expands aliases (*name) to more than the limit of ${n} nodes`,
};

/** `Cannot read FILE: the file <what> (limit NAME=VALUE), at FILE:LINE`. */
export function limitError(name: Exclude<LimitName, "problems">, file: string, line?: number): MembraneError {
  const value = LIMITS[name];
  const where = line === undefined ? "" : `, at ${file}:${line}`;
  return new MembraneError(
    "INPUT_LIMIT_EXCEEDED",
    `Cannot read ${file}: the input ${WHAT[name](value)} (limit ${name}=${value})${where}`,
    {
      location: line === undefined ? { file } : { file, line },
      hint:
        name === "bytes" || name === "documents" || name === "nodes"
          ? "nothing was applied; split the input into several files"
          : "nothing was applied; write the value out instead of nesting or repeating it through aliases",
    },
  );
}

/** The same limit error for text that sits `offset` lines down in `file` (a scenario's policies block). */
export function shiftLimitError(e: MembraneError, file: string, offset: number): MembraneError {
  const loc = e.location;
  if (loc?.line === undefined || loc.file === undefined) return e;
  const line = loc.line + offset;
  const message = e.message.endsWith(`, at ${loc.file}:${loc.line}`)
    ? e.message.slice(0, e.message.lastIndexOf(", at ")) + `, at ${file}:${line}`
    : e.message;
  return new MembraneError(e.code, message, {
    location: { file, line },
    ...(e.hint ? { hint: e.hint } : {}),
  });
}

/** Refuses text above the size limit before anything parses it. */
export function checkSize(text: string, file: string): void {
  // UTF-16 length is a lower bound of the UTF-8 size: avoid encoding huge strings.
  if (text.length > LIMITS.bytes || Buffer.byteLength(text, "utf8") > LIMITS.bytes) {
    throw limitError("bytes", file);
  }
}

/** The last issue of a capped list: `... and K more problems` (or `YAML syntax errors`). */
export function moreIssue(file: string, left: number, what = "problem"): Issue {
  return { file, message: `... and ${left} more ${what}${left === 1 ? "" : "s"}` };
}

/** The last issue when the YAML parser stopped after LIMITS.problems syntax errors. */
export function stoppedIssue(file: string): Issue {
  return { file, message: `... and more: reading stopped after ${LIMITS.problems} YAML syntax errors` };
}

/** K when `issue` is the last issue of a capped list, else undefined. */
export function hiddenCount(issue: Issue): number | undefined {
  const m = /^\.\.\. and (\d+) more /.exec(issue.message);
  return m && issue.line === undefined ? Number(m[1]) : undefined;
}

/**
 * The first `LIMITS.problems` issues, then one saying how many more there
 * were (`hidden` more were already left out upstream). Built without
 * spreading: a list of 120,000 must not reach the stack as arguments.
 */
export function capProblems(items: readonly Issue[], file: string, what = "problem", hidden = 0): Issue[] {
  const out = items.slice(0, LIMITS.problems);
  const left = items.length - out.length + hidden;
  if (left > 0) out.push(moreIssue(file, left, what));
  return out;
}
