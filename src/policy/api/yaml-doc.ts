/**
 * Multi-document YAML with line positions.
 *
 *   text --parseAllDocuments + LineCounter--> [{ctx, root: Val}]   (empty documents skipped)
 *                                             + syntax problems (file:line)
 */
import { LineCounter, parseAllDocuments } from "yaml";
import { Ctx, type Problem, Val } from "./fields.js";

export interface RawDoc {
  /** 0-based position among the file's documents (empty ones included). */
  readonly index: number;
  readonly ctx: Ctx;
  readonly root: Val;
}

export interface ReadResult {
  readonly docs: readonly RawDoc[];
  /** YAML syntax errors; when non-empty nothing else is checked. */
  readonly syntax: readonly Problem[];
}

export function readDocuments(text: string, file: string): ReadResult {
  const lc = new LineCounter();
  const parsed = parseAllDocuments(text, { lineCounter: lc, prettyErrors: true });
  const docs: RawDoc[] = [];
  const syntax: Problem[] = [];
  parsed.forEach((doc, index) => {
    for (const e of doc.errors) {
      const line = e.linePos?.[0].line ?? lc.linePos(e.pos[0]).line;
      const msg = e.message.split("\n")[0] ?? e.message;
      syntax.push({ file, line, path: "", message: `YAML syntax: ${msg}`, unsupported: false });
    }
    const ctx = new Ctx({ file, lc, doc });
    const node = ctx.resolve(doc.contents);
    if (node === null) return;
    if ("value" in node && (node.value === null || node.value === undefined)) return;
    const line = ctx.lineOf(node, 1);
    docs.push({ index, ctx, root: new Val({ ctx, node, path: "", rel: "", line }) });
  });
  return { docs, syntax };
}
