/**
 * Reads an upstream response head far enough to know where the response
 * ends (RFC 9112 §6.3). The response bytes are forwarded as received; this
 * parser only decides the framing, and refuses (-> 502) framing the client
 * could read differently than we do (two lengths, bare LF, NUL).
 *
 *   bytes, request method --parseResponseHead--> incomplete | error | {status, framing, close}
 */
import { ChunkedDecoder } from "./chunked.js";
import { BARE_CR, BARE_LF, headEnd, NUL, type BodyFraming } from "./request.js";

export type ResponseFraming = BodyFraming | { readonly kind: "close" };

export interface ResponseHead {
  readonly status: number;
  /** 1xx other than 101: another head follows. */
  readonly interim: boolean;
  readonly framing: ResponseFraming;
  /** The upstream connection is not reusable after this response. */
  readonly close: boolean;
}

export type ResponseHeadResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly reason: string }
  | { readonly kind: "ok"; readonly head: ResponseHead; readonly length: number };

export function parseResponseHead(buf: Buffer, method: string, maxHeadBytes: number): ResponseHeadResult {
  const end = headEnd(buf);
  if (end === NUL) return fail("NUL in the response head");
  if (end === BARE_LF || end === BARE_CR) return fail("bare LF or CR in the response head");
  if (end < 0) {
    return buf.length > maxHeadBytes ? fail("response head too large") : { kind: "incomplete" };
  }
  if (end + 4 > maxHeadBytes) return fail("response head too large");
  // Read in place: only the status line and three field names matter, no string of the head.
  // Every CR before `end` starts a CRLF (headEnd checked), so a line ends at the next CR.
  const statusEnd = lineEnd(buf, 0, end);
  const minor = statusLine(buf, statusEnd);
  if (minor < 0) return fail("invalid status line");
  const status = (buf[9] as number) * 100 + (buf[10] as number) * 10 + (buf[11] as number) - 0x30 * 111;
  // Content-Length: how many, and the value (-1: not 1-15 digits).
  let cls = 0;
  let clValue = -1;
  let te: string[] | undefined;
  let conn: string[] | undefined;
  for (let at = statusEnd + 2; at < end + 2 && statusEnd < end;) {
    const eol = lineEnd(buf, at, end);
    // The name: up to the first colon, no space or tab in it (leading whitespace included).
    let colon = at;
    while (colon < eol && buf[colon] !== 0x3a) {
      if (buf[colon] === 0x20 || buf[colon] === 0x09) return fail("malformed response header line");
      colon++;
    }
    if (colon === at || colon === eol) return fail("malformed response header line");
    // Only three names matter for framing: compare lengths before the names.
    const n = colon - at;
    if (n === 14 && sameName(buf, at, CONTENT_LENGTH)) {
      if (cls++ === 0) clValue = lengthValue(buf, colon, eol);
    } else if (n === 17 && sameName(buf, at, TRANSFER_ENCODING))
      (te ??= []).push(fieldValue(buf, colon, eol).toLowerCase());
    else if (n === 10 && sameName(buf, at, CONNECTION))
      (conn ??= []).push(
        ...fieldValue(buf, colon, eol)
          .toLowerCase()
          .split(/[ \t]*,[ \t]*/),
      );
    at = eol + 2;
  }
  if (status === 101) return fail("protocol upgrade is not supported");
  const interim = status >= 100 && status < 200;
  const keepAlive = minor === 1 ? !conn?.includes("close") : (conn?.includes("keep-alive") ?? false);
  const noBody = interim || status === 204 || status === 304 || method === "HEAD";
  if (te && cls > 0) return fail("both Content-Length and Transfer-Encoding in the response");
  if (cls > 1) return fail("more than one Content-Length in the response");
  let framing: ResponseFraming;
  if (noBody) framing = NO_BODY;
  else if (te) {
    const codings = te.join(",").split(/[ \t]*,[ \t]*/);
    framing = codings[codings.length - 1] === "chunked" ? CHUNKED : UNTIL_CLOSE;
  } else if (cls > 0) {
    if (clValue < 0) return fail("invalid Content-Length in the response");
    const length = clValue;
    framing = length === 0 ? NO_BODY : { kind: "length", length };
  } else framing = UNTIL_CLOSE;
  const close = !interim && (!keepAlive || framing.kind === "close");
  return { kind: "ok", head: { status, interim, framing, close }, length: end + 4 };
}

/** The first CR in `buf[from, end)`, or `end`. */
function lineEnd(buf: Buffer, from: number, end: number): number {
  let i = from;
  while (i < end && buf[i] !== 0x0d) i++;
  return i;
}

const CONTENT_LENGTH = Buffer.from("content-length", "latin1");
const TRANSFER_ENCODING = Buffer.from("transfer-encoding", "latin1");
const CONNECTION = Buffer.from("connection", "latin1");
const NO_BODY: ResponseFraming = Object.freeze({ kind: "none" });
const CHUNKED: ResponseFraming = Object.freeze({ kind: "chunked" });
const UNTIL_CLOSE: ResponseFraming = Object.freeze({ kind: "close" });

/**
 * `HTTP/1.<0|1> <3 digits>` then the end or a space and a reason (no CR, LF or NUL there: the
 * caller checked the head): the minor version, or -1.
 */
function statusLine(buf: Buffer, len: number): number {
  if (len < 12 || (len > 12 && buf[12] !== 0x20)) return -1;
  for (let i = 0; i < 7; i++) if (buf[i] !== HTTP_1[i]) return -1;
  const minor = buf[7];
  if ((minor !== 0x30 && minor !== 0x31) || buf[8] !== 0x20) return -1;
  for (let i = 9; i < 12; i++) {
    const d = buf[i] as number;
    if (d < 0x30 || d > 0x39) return -1;
  }
  return minor - 0x30;
}

const HTTP_1 = Buffer.from("HTTP/1.", "latin1");

/** `buf[at, at + name.length)` equals `name` (lower-case letters and `-`), ASCII case-insensitively. */
function sameName(buf: Buffer, at: number, name: Buffer): boolean {
  for (let i = 0; i < name.length; i++) if (((buf[at + i] as number) | 0x20) !== name[i]) return false;
  return true;
}

/**
 * A Content-Length value: 1-15 digits between optional SP/HTAB, read from the bytes; anything
 * else is read as a string, trimmed as String#trim does, and must then be 1-15 digits; -1 if not.
 */
function lengthValue(buf: Buffer, colon: number, eol: number): number {
  let a = colon + 1;
  let b = eol;
  while (a < b && (buf[a] === 0x20 || buf[a] === 0x09)) a++;
  while (b > a && (buf[b - 1] === 0x20 || buf[b - 1] === 0x09)) b--;
  let v = 0;
  for (let i = a; i < b; i++) {
    const d = buf[i] as number;
    if (d < 0x30 || d > 0x39) {
      const s = fieldValue(buf, colon, eol);
      return /^[0-9]{1,15}$/.test(s) ? Number(s) : -1;
    }
    v = v * 10 + d - 0x30;
  }
  return b > a && b - a <= 15 ? v : -1;
}

/** The field's value, trimmed as String#trim does. */
function fieldValue(buf: Buffer, colon: number, eol: number): string {
  return buf.toString("latin1", colon + 1, eol).trim();
}

function fail(reason: string): { kind: "error"; reason: string } {
  return { kind: "error", reason };
}

export type ReadResult =
  | { readonly error: string }
  | {
      /** Bytes to pass to the client, as received. */
      readonly forward: readonly Buffer[];
      /** Final status once the final head was read. */
      readonly status: number | undefined;
      readonly done: boolean;
      readonly close: boolean;
      /** Bytes after the end of the response (a misbehaving upstream). */
      readonly extra: number;
    };

const EMPTY = Buffer.alloc(0);

/** Follows one response (its 1xx heads, final head and body) through the upstream bytes. */
export class ResponseReader {
  private head: Buffer = EMPTY;
  private phase: "head" | "body" | "done" = "head";
  private framing: ResponseFraming = NO_BODY;
  private remaining = 0;
  private chunked: ChunkedDecoder | undefined;
  private status: number | undefined;
  private close = false;

  constructor(
    private readonly method: string,
    private readonly maxHeadBytes: number,
  ) {}

  get started(): boolean {
    return this.status !== undefined || this.head.length > 0;
  }

  push(buf: Buffer): ReadResult {
    // What is forwarded from `buf` is one run of it, [runStart, pos), unless a
    // head was split across reads (then that head is a piece of its own):
    // the common response goes out as one subarray of the read, uncopied.
    const forward: Buffer[] = [];
    let pos = 0;
    let runStart = 0;
    while (pos < buf.length && this.phase !== "done") {
      if (this.phase === "head") {
        const stashed = this.head.length;
        const all = stashed === 0 ? buf.subarray(pos) : Buffer.concat([this.head, buf.subarray(pos)]);
        const r = parseResponseHead(all, this.method, this.maxHeadBytes);
        if (r.kind === "error") return { error: r.reason };
        if (r.kind === "incomplete") {
          if (pos > runStart) forward.push(buf.subarray(runStart, pos));
          this.head = Buffer.from(all);
          pos = runStart = buf.length;
          break;
        }
        if (stashed > 0) {
          if (pos > runStart) forward.push(buf.subarray(runStart, pos));
          forward.push(all.subarray(0, r.length));
          runStart = pos + r.length - stashed;
          this.head = EMPTY;
        }
        pos += r.length - stashed;
        if (r.head.interim) continue;
        this.status = r.head.status;
        this.close = r.head.close;
        this.framing = r.head.framing;
        if (this.framing.kind === "none") this.phase = "done";
        else {
          this.phase = "body";
          if (this.framing.kind === "length") this.remaining = this.framing.length;
          if (this.framing.kind === "chunked") this.chunked = new ChunkedDecoder({ strict: false });
        }
        continue;
      }
      if (this.framing.kind === "length") {
        const n = Math.min(this.remaining, buf.length - pos);
        pos += n;
        this.remaining -= n;
        if (this.remaining === 0) this.phase = "done";
      } else if (this.framing.kind === "chunked" && this.chunked) {
        const r = this.chunked.push(buf.subarray(pos));
        if ("error" in r) return { error: r.error };
        pos += r.consumed;
        if (r.done) this.phase = "done";
      } else {
        pos = buf.length;
      }
    }
    // The whole read (the common response): the buffer itself, not a view of it.
    if (pos > runStart)
      forward.push(runStart === 0 && pos === buf.length ? buf : buf.subarray(runStart, pos));
    return {
      forward,
      status: this.status,
      done: this.phase === "done",
      close: this.close,
      extra: buf.length - pos,
    };
  }

  /** Upstream closed: complete only for a close-delimited body. */
  endOfInput(): boolean {
    if (this.phase === "body" && this.framing.kind === "close") this.phase = "done";
    return this.phase === "done";
  }
}
