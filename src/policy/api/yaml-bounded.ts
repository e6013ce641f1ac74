/**
 * The `yaml` library's parseAllDocuments, with bounds checked while it reads.
 *
 *   text --checkSize--> Lexer --each token--> Parser (stack depth <= LIMITS.depth,
 *        nodes opened <= LIMITS.nodes, documents <= LIMITS.documents) --> Composer --> Document[]
 *
 * Checked during tokenising, not after: a 2 MiB `[[[[...` takes the library
 * tens of seconds and overflows its recursive composer, so the depth is
 * refused at the token that crosses it. The parser's own stack is the depth
 * measure, so block and flow nesting and `- - -` chains count alike, exactly
 * as the library sees them.
 *
 * Syntax errors: parsing stops at the first error past LIMITS.problems (a
 * 1 MiB flood of errors took the library 20 s and over 512 MB of heap);
 * the caller reports the errors found and that it stopped.
 */
import { Composer, type CST, type Document, Lexer, LineCounter, Parser, type YAMLError } from "yaml";
import { checkSize, LIMITS, limitError } from "./limits.js";

export interface BoundedParse {
  /** The documents; when `errors` is non-empty they are not to be read. */
  readonly docs: Document.Parsed[];
  readonly lc: LineCounter;
  /** Syntax errors of every document, in order, with `linePos` set; at most LIMITS.problems. */
  readonly errors: YAMLError[];
  /** True when parsing stopped at one more syntax error than `errors` holds. */
  readonly stopped: boolean;
}

type OnError = (source: unknown, code: string, message: string, warning?: boolean) => void;

class StopParse extends Error {}

/** Parses every document of `text`, or throws INPUT_LIMIT_EXCEEDED. */
export function parseAllBounded(text: string, file: string): BoundedParse {
  checkSize(text, file);
  const lc = new LineCounter();
  const parser = new Parser(lc.addNewLine);
  const composer = new Composer({ prettyErrors: false });
  // The composer reports errors through this (instance) callback; count them, stop past the cap.
  const internals = composer as unknown as { onError: OnError; errors: YAMLError[] };
  const report = internals.onError;
  let count = 0;
  internals.onError = (source, code, message, warning) => {
    if (warning !== true && ++count > LIMITS.problems) throw new StopParse();
    report(source, code, message, warning);
  };
  const docs: Document.Parsed[] = [];
  let stopped = false;
  try {
    for (const d of composer.compose(boundedTokens(text, file, parser, lc))) docs.push(d);
  } catch (e) {
    if (!(e instanceof StopParse)) throw e;
    stopped = true;
  }
  const errors: YAMLError[] = [];
  for (const d of docs) for (const e of d.errors) errors.push(e);
  // Errors of the document being composed when parsing stopped.
  if (stopped) for (const e of internals.errors) errors.push(e);
  for (const e of errors) locate(e, text, lc);
  return { docs, lc, errors, stopped };
}

function* boundedTokens(text: string, file: string, parser: Parser, lc: LineCounter): Generator<CST.Token> {
  lc.addNewLine(0);
  let documents = 0;
  let nodes = 0;
  for (const lexeme of new Lexer().lex(text)) {
    const before = parser.stack.length;
    for (const token of parser.next(lexeme)) {
      if (token.type === "document" && ++documents > LIMITS.documents) {
        throw limitError("documents", file, lc.linePos(token.offset).line);
      }
      yield token;
    }
    const after = parser.stack.length;
    if (after > LIMITS.depth) throw limitError("depth", file, lc.linePos(parser.offset).line);
    if (after > before && (nodes += after - before) > LIMITS.nodes) {
      throw limitError("nodes", file, lc.linePos(parser.offset).line);
    }
  }
  for (const token of parser.end()) {
    if (token.type === "document" && ++documents > LIMITS.documents) {
      throw limitError("documents", file, lc.linePos(token.offset).line);
    }
    yield token;
  }
}

/** What `prettyErrors` does to the first line of a message: `... at line L, column C:`. */
function locate(e: YAMLError, text: string, lc: LineCounter): void {
  if (e.pos[0] === -1) return;
  const start = lc.linePos(e.pos[0]);
  e.linePos = [start, lc.linePos(e.pos[1])];
  const lineStart = lc.lineStarts[start.line - 1] ?? 0;
  const lineEnd = lc.lineStarts[start.line] ?? text.length;
  const hasText = /[^ \r\n]/.test(text.slice(lineStart, Math.min(lineEnd, lineStart + 200)));
  e.message += ` at line ${start.line}, column ${start.col}${hasText ? ":" : ""}`;
}
