/**
 * The `yaml` library's parseAllDocuments, with bounds checked while it reads.
 *
 *   text --checkSize--> Lexer --each token--> Parser (stack depth <= LIMITS.depth,
 *        documents <= LIMITS.documents) --> Composer --> Document[]
 *
 * Checked during tokenising, not after: a 2 MiB `[[[[...` takes the library
 * tens of seconds and overflows its recursive composer, so the depth is
 * refused at the token that crosses it. The parser's own stack is the depth
 * measure, so block and flow nesting and `- - -` chains count alike, exactly
 * as the library sees them.
 */
import { Composer, type CST, type Document, Lexer, LineCounter, Parser, type YAMLError } from "yaml";
import { checkSize, LIMITS, limitError } from "./limits.js";

export interface BoundedParse {
  readonly docs: Document.Parsed[];
  readonly lc: LineCounter;
}

/** Parses every document of `text`, or throws INPUT_LIMIT_EXCEEDED. */
export function parseAllBounded(text: string, file: string): BoundedParse {
  checkSize(text, file);
  const lc = new LineCounter();
  const parser = new Parser(lc.addNewLine);
  const composer = new Composer({ prettyErrors: false });
  const docs = Array.from(composer.compose(boundedTokens(text, file, parser, lc)));
  for (const d of docs) {
    for (const e of d.errors) locate(e, text, lc);
    for (const e of d.warnings) locate(e, text, lc);
  }
  return { docs, lc };
}

function* boundedTokens(text: string, file: string, parser: Parser, lc: LineCounter): Generator<CST.Token> {
  lc.addNewLine(0);
  let documents = 0;
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) {
      if (token.type === "document" && ++documents > LIMITS.documents) {
        throw limitError("documents", file, lc.linePos(token.offset).line);
      }
      yield token;
    }
    if (parser.stack.length > LIMITS.depth) {
      throw limitError("depth", file, lc.linePos(parser.offset).line);
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
