/**
 * Multi-document YAML with line positions.
 *
 *   text --parseAllBounded + LineCounter--> [{ctx, root: Val}]   (empty documents skipped)
 *                                           + syntax problems (file:line)
 *
 * Size, nesting depth and document count are refused while parsing, alias
 * expansion while the documents are read (one budget for the whole file):
 * see limits.ts.
 */
import { AliasBudget } from "./aliases.js";
import { Ctx, type Problem, Val } from "./fields.js";
import { parseAllBounded } from "./yaml-bounded.js";

export interface RawDoc {
  /** 0-based position among the file's documents (empty ones included). */
  readonly index: number;
  readonly ctx: Ctx;
  readonly root: Val;
}

export interface ReadResult {
  readonly docs: readonly RawDoc[];
  /** YAML syntax errors; when non-empty nothing else is checked (and `docs` is empty). */
  readonly syntax: readonly Problem[];
  /** Parsing stopped after LIMITS.problems syntax errors: there were more. */
  readonly stopped: boolean;
}

/** Throws INPUT_LIMIT_EXCEEDED when the text crosses a limit. */
export function readDocuments(text: string, file: string): ReadResult {
  const { docs: parsed, lc, errors, stopped } = parseAllBounded(text, file);
  const syntax: Problem[] = errors.map((e) => {
    const line = e.linePos?.[0].line ?? lc.linePos(e.pos[0]).line;
    const msg = e.message.split("\n")[0] ?? e.message;
    return { file, line, path: "", message: `YAML syntax: ${msg}`, unsupported: false };
  });
  if (syntax.length > 0) return { docs: [], syntax, stopped };
  const budget = new AliasBudget();
  const docs: RawDoc[] = [];
  parsed.forEach((doc, index) => {
    const ctx = new Ctx({ file, lc, doc, budget });
    const node = ctx.resolve(doc.contents);
    if (node === null) return;
    if ("value" in node && (node.value === null || node.value === undefined)) return;
    const line = ctx.lineOf(node, 1);
    docs.push({ index, ctx, root: new Val({ ctx, node, path: "", rel: "", line }) });
  });
  return { docs, syntax, stopped };
}
