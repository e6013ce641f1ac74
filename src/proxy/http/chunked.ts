/**
 * Incremental decoder of the chunked transfer coding (RFC 9112 §7.1).
 *
 *   bytes --push--> {consumed, data[], done} | {error}
 *
 * `strict` (requests, before they reach upstream): the size line is 1-8 hex
 * digits and CRLF, nothing else: no chunk extensions, no whitespace, no
 * trailer fields. A request body that needs any of those is refused rather
 * than interpreted, because servers disagree on them (chunk-extension and
 * trailer smuggling). Not strict (responses, only to find where they end):
 * extensions and trailers are skipped, sizes up to 12 hex digits.
 */

const MAX_LINE = 4096;
const MAX_TRAILERS = 64 * 1024;

type State = "size" | "data" | "data-crlf" | "trailer" | "done";

export type ChunkResult =
  | { readonly error: string }
  | { readonly consumed: number; readonly data: readonly Buffer[]; readonly done: boolean };

export class ChunkedDecoder {
  private readonly strict: boolean;
  private state: State = "size";
  private remaining = 0;
  /** Partial line carried over between pushes (size line, CRLF, trailer line). */
  private line: Buffer = Buffer.alloc(0);
  private trailerBytes = 0;

  constructor(params: { strict: boolean }) {
    this.strict = params.strict;
  }

  get done(): boolean {
    return this.state === "done";
  }

  push(buf: Buffer): ChunkResult {
    const data: Buffer[] = [];
    let pos = 0;
    while (pos < buf.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.remaining, buf.length - pos);
        data.push(buf.subarray(pos, pos + n));
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) this.state = "data-crlf";
        continue;
      }
      // Line-oriented states: collect up to LF.
      const lf = buf.indexOf(0x0a, pos);
      const upto = lf < 0 ? buf.length : lf + 1;
      this.line =
        this.line.length === 0
          ? buf.subarray(pos, upto)
          : Buffer.concat([this.line, buf.subarray(pos, upto)]);
      pos = upto;
      if (this.line.length > MAX_LINE) return { error: "chunk line too long" };
      if (lf < 0) {
        if (this.state === "data-crlf" && !(this.line.length === 1 && this.line[0] === 0x0d)) {
          return { error: "chunk data not followed by CRLF" };
        }
        break;
      }
      const line = this.line;
      this.line = Buffer.alloc(0);
      if (line.length < 2 || line[line.length - 2] !== 0x0d) return { error: "bare LF in chunked body" };
      const text = line.toString("latin1", 0, line.length - 2);
      const e = this.onLine(text, line.length);
      if (e !== undefined) return { error: e };
    }
    return { consumed: pos, data, done: this.state === "done" };
  }

  private onLine(text: string, raw: number): string | undefined {
    switch (this.state) {
      case "data-crlf":
        if (text !== "") return "chunk data not followed by CRLF";
        this.state = "size";
        return undefined;
      case "size": {
        const m = this.strict
          ? /^([0-9A-Fa-f]{1,8})$/.exec(text)
          : /^([0-9A-Fa-f]{1,12})[ \t]*(?:;.*)?$/.exec(text);
        if (!m)
          return this.strict ? "invalid chunk size line (extensions are not accepted)" : "invalid chunk size";
        const size = parseInt(m[1] as string, 16);
        if (size === 0) this.state = "trailer";
        else {
          this.remaining = size;
          this.state = "data";
        }
        return undefined;
      }
      case "trailer":
        if (text === "") {
          this.state = "done";
          return undefined;
        }
        if (this.strict) return "trailer fields are not accepted";
        this.trailerBytes += raw;
        if (this.trailerBytes > MAX_TRAILERS) return "trailers too large";
        return undefined;
      default:
        return "chunked decoder misuse";
    }
  }
}

/** One chunk of the chunked coding, as we write it upstream. */
export function encodeChunk(data: Buffer): Buffer[] {
  return [Buffer.from(data.length.toString(16) + "\r\n", "latin1"), data, Buffer.from("\r\n", "latin1")];
}

export const LAST_CHUNK: Buffer = Buffer.from("0\r\n\r\n", "latin1");
