/**
 * A strict HTTP/1.1 request-head parser (RFC 9110/9112).
 *
 * Why not Node's `http` server: llhttp accepts some inputs in lenient ways
 * (e.g. it joins duplicate headers, tolerates some whitespace, and has
 * lenient flags that must never be switched on), and it hands us an
 * already-merged view. A proxy that enforces policy must judge exactly the
 * bytes the upstream server will act on, so every ambiguity (two lengths,
 * folded lines, bare LF, odd whitespace) is rejected here, before a byte
 * reaches upstream, and the request is re-serialised from this parsed form.
 *
 *   bytes --parseRequestHead--> incomplete | error(reason) | {head, length}
 */
import { HEADER_FIELD_VALUE } from "../../policy/l7/http.js";

export const DEFAULT_MAX_HEAD_BYTES = 64 * 1024;
export const DEFAULT_MAX_HEADERS = 100;
/** Largest Content-Length accepted (15 decimal digits: below 2^53). */
const MAX_CL_DIGITS = 15;

export interface HeaderField {
  /** As received. */
  readonly name: string;
  readonly lower: string;
  readonly value: string;
}

export type BodyFraming =
  | { readonly kind: "none" }
  | { readonly kind: "length"; readonly length: number }
  | { readonly kind: "chunked" };

export interface RequestHead {
  readonly method: string;
  /** Origin-form target (absolute-form converted), not yet normalised. */
  readonly target: string;
  readonly version: "HTTP/1.0" | "HTTP/1.1";
  /** Host header value (the authority), when present; read from `headers`, so it is forwarded. */
  readonly host: string | undefined;
  /**
   * The header fields exactly as forwarded, in order: the client's end-to-end
   * fields, then the framing and connection fields we write. Both the policy
   * (`judgedRequest`) and `serializeRequest` read this one list, so what is
   * judged and what upstream receives cannot diverge.
   */
  readonly headers: readonly HeaderField[];
  readonly framing: BodyFraming;
  /** The client asked to close after this exchange (or HTTP/1.0 without keep-alive). */
  readonly close: boolean;
  readonly expectContinue: boolean;
}

export type HeadResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly reason: string }
  | {
      readonly kind: "ok";
      readonly head: RequestHead;
      readonly length: number;
      /**
       * The head's bytes, `[0, length)`, are exactly what `serializeRequest(head, head.target)`
       * writes: every field line `name: value` (one space, no trailing OWS), nothing left out or
       * added, origin-form target. A caller that changes neither path nor fields may forward them.
       */
      readonly verbatim: boolean;
    };

export interface HeadLimits {
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** field-value: VCHAR, obs-text, SP and HT inside; no other control characters. */
const FIELD_VALUE = HEADER_FIELD_VALUE;
/** RFC 3986 characters of path and query, `%` followed by two hex digits checked separately. */
const TARGET_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]+$/;
const PCT = /%(?![0-9A-Fa-f]{2})/;
/** Host: reg-name / IPv4 / [IPv6], optional port. No userinfo. */
const HOST_VALUE = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(?::[0-9]{1,5})?$/;

/**
 * Not forwarded as received: hop-by-hop fields (RFC 9110 §7.6.1) and the
 * framing fields, which are written from the parsed framing instead.
 */
export const NOT_FORWARDED: ReadonlySet<string> = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
  "content-length",
]);

/**
 * The only tokens a Connection header may carry. Decision (issue 9 item 1):
 * any other token is refused with 400, rather than honoured by removing the
 * field it names. Removing a field the client marked hop-by-hop lets the
 * client change the request between the judge and upstream (`Connection:
 * host` judged with Host, forwarded without), and which fields matter
 * depends on the policy and on the upstream server (a rule's header, Host,
 * the framing fields, a header the backend authorises on). A fixed list
 * does not depend on the policy or on which fields are present, and every
 * field it names is one we never forward anyway (NOT_FORWARDED): so the
 * Connection header never removes anything from the judged request.
 * `close` and `keep-alive` are the connection options; `upgrade` and
 * `http2-settings` come with h2c upgrades (curl --http2), `te` and
 * `trailer` with TE, `proxy-connection` from old clients.
 */
const CONNECTION_TOKENS: ReadonlySet<string> = new Set([
  "close",
  "keep-alive",
  "upgrade",
  "http2-settings",
  "te",
  "trailer",
  "proxy-connection",
]);

/**
 * Parses the head at the start of `buf`. Bare LF and NUL are found as soon as
 * they arrive (no need to wait for the end of a head that never comes).
 *
 * Per request this runs once: one latin1 string of the head, read by offsets
 * (no array of lines), and field names lower-cased through a small cache.
 */
export function parseRequestHead(buf: Buffer, limits: HeadLimits): HeadResult {
  const end = headEnd(buf);
  if (end === BARE_LF) return err("bare LF line ending");
  if (end === BARE_CR) return err("bare CR in the request head");
  if (end === NUL) return err("NUL byte in the request head");
  if (end < 0) {
    // The request line is checked as soon as it is complete: an HTTP/0.9
    // request (`GET /` and CRLF) has no head to wait for, so it must be
    // refused now, not when the idle timeout ends the connection.
    const eol = buf.indexOf(CRLF);
    if (eol === 0) return err("empty line before the request line");
    if (eol > 0) {
      const bad = requestLine(buf.toString("latin1", 0, eol));
      if (typeof bad === "string") return err(bad);
    }
    return buf.length > limits.maxHeadBytes ? err("request head too large") : { kind: "incomplete" };
  }
  if (end + 4 > limits.maxHeadBytes) return err("request head too large");
  const s = buf.toString("latin1", 0, end);
  const firstEol = s.indexOf("\r\n");
  const lineEnd = firstEol < 0 ? s.length : firstEol;
  if (lineEnd === 0) return err("empty line before the request line");
  let fieldLines = 0;
  for (let i = firstEol; i >= 0; i = s.indexOf("\r\n", i + 2)) fieldLines++;
  if (fieldLines > limits.maxHeaders) return err("too many header fields");

  const parts = requestLine(s.slice(0, lineEnd));
  if (typeof parts === "string") return err(parts);
  const [method, rawTarget, version] = parts;

  const headers: HeaderField[] = [];
  // The fields framing and connection handling look at, collected in the same pass.
  let host: HeaderField | undefined;
  let hosts = 0;
  let cl: HeaderField[] | undefined;
  let te: HeaderField[] | undefined;
  let connection: HeaderField[] | undefined;
  let expect: HeaderField[] | undefined;
  let dropped = false;
  // Every line is `name: value` with one space and no trailing OWS: serializeRequest writes the same bytes.
  let canonical = true;
  for (let at = lineEnd + 2; at < s.length + 2 && firstEol >= 0;) {
    const next = s.indexOf("\r\n", at);
    const eol = next < 0 ? s.length : next;
    const first = s.charCodeAt(at);
    if (first === 0x20 || first === 0x09) return err("obsolete line folding");
    const colon = s.indexOf(":", at);
    if (colon <= at || colon >= eol) return err("header line without a name and colon");
    const name = s.slice(at, colon);
    if (!TOKEN.test(name))
      return err("invalid header name (space before the colon or a non-token character)");
    let a = colon + 1;
    let b = eol;
    while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
    while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
    if (a !== colon + 2 || b !== eol || s.charCodeAt(colon + 1) !== 0x20) canonical = false;
    const value = s.slice(a, b);
    if (!FIELD_VALUE.test(value)) return err("control character in a header value");
    const h: HeaderField = { name, lower: lowerName(name), value };
    headers.push(h);
    switch (h.lower) {
      case "host":
        hosts++;
        host ??= h;
        break;
      case "content-length":
        (cl ??= []).push(h);
        break;
      case "transfer-encoding":
        (te ??= []).push(h);
        break;
      case "connection":
        (connection ??= []).push(h);
        break;
      case "expect":
        (expect ??= []).push(h);
        break;
    }
    if (!dropped && NOT_FORWARDED.has(h.lower)) dropped = true;
    at = eol + 2;
  }

  if (hosts > 1) return err("more than one Host header");
  const hostValue = host?.value;
  if (hostValue !== undefined && !HOST_VALUE.test(hostValue)) return err("invalid Host header");
  if (hostValue === undefined && version === "HTTP/1.1") return err("HTTP/1.1 request without Host");

  const target = originForm(rawTarget, hostValue);
  if (typeof target !== "string") return target;

  const framing = bodyFraming(cl ?? NONE, te ?? NONE, version);
  if ("reason" in framing) return framing;

  let close = version === "HTTP/1.0";
  if (connection) {
    const connTokens = connection
      .flatMap((h) => h.value.toLowerCase().split(/[ \t]*,[ \t]*/))
      .filter((t) => t !== "");
    if (connTokens.some((t) => !CONNECTION_TOKENS.has(t))) {
      return err(
        "Connection header names a field that is not hop-by-hop " +
          `(accepted: ${[...CONNECTION_TOKENS].join(", ")})`,
      );
    }
    close = connTokens.includes("close") || (version === "HTTP/1.0" && !connTokens.includes("keep-alive"));
  }
  if (expect && (expect.length > 1 || (expect[0] as HeaderField).value.toLowerCase() !== "100-continue")) {
    return err("unsupported Expect header");
  }
  // The client's array itself when nothing is left out (the common request).
  const forwarded = dropped ? headers.filter((h) => !NOT_FORWARDED.has(h.lower)) : headers;
  const ours = (name: string, value: string): void => {
    forwarded.push({ name, lower: name.toLowerCase(), value });
  };
  const added = framing.kind !== "none" || close || version === "HTTP/1.0";
  if (framing.kind === "length") ours("Content-Length", String(framing.length));
  if (framing.kind === "chunked") ours("Transfer-Encoding", "chunked");
  if (close) ours("Connection", "close");
  else if (version === "HTTP/1.0") ours("Connection", "keep-alive");
  const head: RequestHead = {
    method,
    target,
    version,
    // Host is never left out (NOT_FORWARDED): the forwarded field is the one received.
    host: hostValue,
    headers: forwarded,
    framing,
    close,
    expectContinue: expect !== undefined,
  };
  const verbatim = canonical && !dropped && !added && target === rawTarget;
  return { kind: "ok", head, length: end + 4, verbatim };
}

const CRLF = Buffer.from("\r\n", "latin1");

/** headEnd's answers when a byte before the head's end is refused. */
export const BARE_LF = -2;
export const BARE_CR = -3;
export const NUL = -4;

/**
 * Where the head at the start of `buf` ends (the index of its CRLF CRLF), -1 if not yet, or
 * BARE_LF / BARE_CR / NUL for the first such byte before the end (a CR as the last byte waits
 * for the next). One pass over the bytes in JavaScript: per request, cheaper than asking
 * Buffer#indexOf (a call into C++) and then checking the bytes again.
 */
export function headEnd(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x0a) {
      if (i === 0 || buf[i - 1] !== 0x0d) return BARE_LF;
      if (i >= 3 && buf[i - 2] === 0x0a && buf[i - 3] === 0x0d) return i - 3;
    } else if (c === 0x0d) {
      if (i + 1 < buf.length && buf[i + 1] !== 0x0a) return BARE_CR;
    } else if (c === 0) return NUL;
  }
  return -1;
}
const NONE: readonly HeaderField[] = [];

/**
 * Lower-case field names of the names seen before (`Host`, `User-Agent`, ...), so that the
 * common request makes no new string for them; bounded (a client choosing names cannot grow it).
 */
const LOWER = new Map<string, string>();
const LOWER_MAX = 512;

function lowerName(name: string): string {
  let l = LOWER.get(name);
  if (l === undefined) {
    l = name.toLowerCase();
    if (LOWER.size < LOWER_MAX) LOWER.set(name, l);
  }
  return l;
}

/** The parts of a complete request line, or what is wrong with it (as `line.split(" ")` would find). */
function requestLine(line: string): [string, string, "HTTP/1.0" | "HTTP/1.1"] | string {
  if (line === "") return "empty line before the request line";
  const sp1 = line.indexOf(" ");
  const sp2 = sp1 < 0 ? -1 : line.indexOf(" ", sp1 + 1);
  if (sp1 >= 0 && sp2 < 0 && TOKEN.test(line.slice(0, sp1))) {
    return "request line without an HTTP version (HTTP/0.9 is not supported)";
  }
  if (sp2 < 0 || line.indexOf(" ", sp2 + 1) >= 0) return "request line is not 'method SP target SP version'";
  const method = line.slice(0, sp1);
  const version = line.slice(sp2 + 1);
  if (!TOKEN.test(method)) return "invalid method";
  if (version !== "HTTP/1.1" && version !== "HTTP/1.0") return "unsupported HTTP version";
  if (method === "CONNECT") return "CONNECT is not supported";
  return [method, line.slice(sp1 + 1, sp2), version];
}

function err(reason: string): { kind: "error"; reason: string } {
  return { kind: "error", reason };
}

/** Origin-form as is; absolute-form only when its authority is the Host; nothing else. */
function originForm(raw: string, host: string | undefined): string | { kind: "error"; reason: string } {
  if (raw.includes("#")) return err("fragment in the request target");
  if (raw.startsWith("/")) {
    return checkTarget(raw);
  }
  const m = /^http:\/\/([^/?]+)(.*)$/i.exec(raw);
  if (!m) return err("request target is neither origin-form nor absolute-form");
  const authority = m[1] as string;
  const rest = m[2] as string;
  if (host === undefined || authority.toLowerCase() !== host.toLowerCase()) {
    return err("absolute-form target does not match Host");
  }
  return checkTarget(rest === "" ? "/" : rest.startsWith("?") ? "/" + rest : rest);
}

function checkTarget(t: string): string | { kind: "error"; reason: string } {
  if (!t.startsWith("/")) return err("request target must start with '/'");
  if (!TARGET_CHARS.test(t) || (t.includes("%") && PCT.test(t)))
    return err("invalid character in the request target");
  const q = t.indexOf("?");
  const path = q < 0 ? t : t.slice(0, q);
  if (path.includes("%") && /%(2f|5c|00)/i.test(path))
    return err("encoded slash, backslash or NUL in the path");
  // `..;x` is `..` to servers that strip path parameters (Tomcat, Jetty): a
  // dot segment hidden behind parameters is ambiguous, so it is refused.
  if (path.includes(";"))
    for (const seg of path.split("/")) {
      const semi = seg.indexOf(";");
      if (semi < 0) continue;
      const bare = seg.slice(0, semi).replace(/%2e/gi, ".");
      if (bare === "." || bare === "..") return err("dot segment with path parameters");
    }
  return t;
}

function bodyFraming(
  cl: readonly HeaderField[],
  te: readonly HeaderField[],
  version: string,
): BodyFraming | { kind: "error"; reason: string } {
  if (te.length > 0 && cl.length > 0) return err("both Content-Length and Transfer-Encoding");
  if (te.length > 0) {
    if (version === "HTTP/1.0") return err("Transfer-Encoding in an HTTP/1.0 request");
    if (te.length > 1 || (te[0] as HeaderField).value.toLowerCase() !== "chunked") {
      return err("unsupported Transfer-Encoding (only a single 'chunked')");
    }
    return { kind: "chunked" };
  }
  if (cl.length > 1) return err("more than one Content-Length");
  const v = cl[0]?.value;
  if (v === undefined) return { kind: "none" };
  if (!/^[0-9]+$/.test(v) || v.length > MAX_CL_DIGITS) return err("invalid Content-Length");
  const length = Number(v);
  return length === 0 ? { kind: "none" } : { kind: "length", length };
}

/**
 * The request as forwarded: normalised path and `head.headers`, the one
 * field list the policy judged (hop-by-hop fields already removed, framing
 * fields written from the parsed framing).
 */
export function serializeRequest(head: RequestHead, path: string): Buffer {
  let out = `${head.method} ${path} ${head.version}\r\n`;
  for (const h of head.headers) out += `${h.name}: ${h.value}\r\n`;
  return Buffer.from(out + "\r\n", "latin1");
}
