/**
 * Reads an upstream response head far enough to know where the response
 * ends (RFC 9112 §6.3). The response bytes are forwarded as received; this
 * parser only decides the framing, and refuses (-> 502) framing the client
 * could read differently than we do (two lengths, bare LF, NUL).
 *
 *   bytes, request method --parseResponseHead--> incomplete | error | {status, framing, close}
 */
import { ChunkedDecoder } from "./chunked.js";
import type { BodyFraming } from "./request.js";

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
  const end = buf.indexOf("\r\n\r\n", 0, "latin1");
  if (end < 0) {
    return buf.length > maxHeadBytes ? fail("response head too large") : { kind: "incomplete" };
  }
  if (end + 4 > maxHeadBytes) return fail("response head too large");
  for (let i = 0; i < end; i++) {
    const c = buf[i];
    if (c === 0) return fail("NUL in the response head");
    if (c === 0x0a && (i === 0 || buf[i - 1] !== 0x0d)) return fail("bare LF or CR in the response head");
    if (c === 0x0d && buf[i + 1] !== 0x0a) return fail("bare LF or CR in the response head");
  }
  const lines = buf.toString("latin1", 0, end).split("\r\n");
  const m = /^HTTP\/1\.([01]) ([0-9]{3})(?: .*)?$/.exec(lines[0] as string);
  if (!m) return fail("invalid status line");
  const minor = m[1] as string;
  const status = Number(m[2]);
  const cl: string[] = [];
  const te: string[] = [];
  const conn: string[] = [];
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    const colon = line.indexOf(":");
    if (colon <= 0 || hasSpaceOrTab(line, colon)) return fail("malformed response header line");
    // Only three names matter for framing: compare lengths before lower-casing.
    if (colon !== 14 && colon !== 17 && colon !== 10) continue;
    const name = line.slice(0, colon).toLowerCase();
    if (name === "content-length") cl.push(line.slice(colon + 1).trim());
    else if (name === "transfer-encoding")
      te.push(
        line
          .slice(colon + 1)
          .trim()
          .toLowerCase(),
      );
    else if (name === "connection")
      conn.push(
        ...line
          .slice(colon + 1)
          .trim()
          .toLowerCase()
          .split(/[ \t]*,[ \t]*/),
      );
  }
  if (status === 101) return fail("protocol upgrade is not supported");
  const interim = status >= 100 && status < 200;
  const keepAlive = minor === "1" ? !conn.includes("close") : conn.includes("keep-alive");
  const noBody = interim || status === 204 || status === 304 || method === "HEAD";
  if (te.length > 0 && cl.length > 0)
    return fail("both Content-Length and Transfer-Encoding in the response");
  if (cl.length > 1) return fail("more than one Content-Length in the response");
  let framing: ResponseFraming;
  if (noBody) framing = { kind: "none" };
  else if (te.length > 0) {
    const codings = te.join(",").split(/[ \t]*,[ \t]*/);
    framing = codings[codings.length - 1] === "chunked" ? { kind: "chunked" } : { kind: "close" };
  } else if (cl.length === 1) {
    const v = cl[0] as string;
    if (!/^[0-9]{1,15}$/.test(v)) return fail("invalid Content-Length in the response");
    const length = Number(v);
    framing = length === 0 ? { kind: "none" } : { kind: "length", length };
  } else framing = { kind: "close" };
  const close = !interim && (!keepAlive || framing.kind === "close");
  return { kind: "ok", head: { status, interim, framing, close }, length: end + 4 };
}

/** A space or tab in the field name (`line[0, colon)`), leading whitespace included. */
function hasSpaceOrTab(line: string, colon: number): boolean {
  for (let i = 0; i < colon; i++) {
    const c = line.charCodeAt(i);
    if (c === 0x20 || c === 0x09) return true;
  }
  return false;
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

/** Follows one response (its 1xx heads, final head and body) through the upstream bytes. */
export class ResponseReader {
  private head: Buffer = Buffer.alloc(0);
  private phase: "head" | "body" | "done" = "head";
  private framing: ResponseFraming = { kind: "none" };
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
          this.head = Buffer.alloc(0);
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
    if (pos > runStart) forward.push(buf.subarray(runStart, pos));
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
