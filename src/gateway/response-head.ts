/**
 * The backend's HTTP/1.1 response head as the gateway's client gets it: the
 * hop-by-hop fields (Connection, Keep-Alive) are the gateway's own, the
 * route's ResponseHeaderModifiers are applied, an HTTP/1.0 status line says
 * HTTP/1.1, every field is written `name: value`.
 *
 *   raw head --unchanged by all that (the common response)--> raw itself (the read goes out uncopied)
 *            --otherwise--> fields parsed, filtered, modified, written anew (rewriteFields)
 */
import { modifyHeaders } from "./filters.js";
import type { HeaderModifier } from "./model.js";

/**
 * The head the client gets, from `raw` (a head parseResponseHead accepted, its final CRLF CRLF
 * included). Returns `raw` itself when the rewrite would write the same bytes, so that the
 * caller can tell (`===`) and forward the backend's read as it is.
 */
export function rewriteHead(raw: Buffer, mods: readonly HeaderModifier[], keepAlive: boolean): Buffer {
  if (keepAlive && mods.length === 0 && unchanged(raw)) return raw;
  return rewriteFields(raw, mods, keepAlive);
}

/** The rewrite itself, on strings: what rewriteHead's bytes are, whichever way it takes. */
export function rewriteFields(raw: Buffer, mods: readonly HeaderModifier[], keepAlive: boolean): Buffer {
  const lines = raw
    .toString("latin1")
    .split("\r\n")
    .filter((l) => l !== "");
  const statusLine = (lines[0] ?? "HTTP/1.1 502 Bad Gateway").replace(/^HTTP\/1\.0/, "HTTP/1.1");
  let fields = lines.slice(1).map((l) => {
    const c = l.indexOf(":");
    return { name: l.slice(0, c), value: l.slice(c + 1).trim() };
  });
  fields = fields.filter((f) => !["connection", "keep-alive"].includes(f.name.toLowerCase()));
  for (const m of mods) fields = modifyHeaders(fields, m);
  if (!keepAlive) fields.push({ name: "connection", value: "close" });
  return Buffer.from(
    [statusLine, ...fields.map((f) => `${f.name}: ${f.value}`)].join("\r\n") + "\r\n\r\n",
    "latin1",
  );
}

const CONNECTION = Buffer.from("connection", "latin1");
const KEEP_ALIVE = Buffer.from("keep-alive", "latin1");
const HTTP_10 = Buffer.from("HTTP/1.0", "latin1");

/** Bytes String#trim removes, in latin1: TAB, LF, VT, FF, CR, SP, NBSP. */
function trimmed(b: number | undefined): boolean {
  return b === 0x20 || b === 0xa0 || (b !== undefined && b >= 0x09 && b <= 0x0d);
}

/** `raw[at, end)` is `n` (lower case), ASCII capitals read as small letters. */
function isName(raw: Buffer, at: number, end: number, n: Buffer): boolean {
  if (end - at !== n.length) return false;
  for (let i = 0; i < n.length; i++) {
    const b = raw[at + i] as number;
    if ((b >= 0x41 && b <= 0x5a ? b | 0x20 : b) !== n[i]) return false;
  }
  return true;
}

/**
 * Would rewriteFields (no modifiers, kept alive) write `raw` again? Yes when the status line is
 * not HTTP/1.0, no field is Connection or Keep-Alive, and every field line is `name: value`:
 * one space after the colon, then a value that trim() leaves as it is (or nothing).
 * One pass over the bytes, in JavaScript: a head is short, a call into C++ per line costs more.
 */
function unchanged(raw: Buffer): boolean {
  const end = raw.length - 2; // where the final empty line starts
  if (end < 2 || raw[end] !== 0x0d || raw[end - 2] !== 0x0d) return false;
  let v = 0;
  while (v < HTTP_10.length && raw[v] === HTTP_10[v]) v++;
  if (v === HTTP_10.length) return false; // rewritten as HTTP/1.1
  // Every CR below is followed by LF and the head ends with CRLF CRLF: each scan stops in it.
  let i = 0;
  while (raw[i] !== 0x0d) i++;
  i += 2;
  while (i < end) {
    const start = i;
    while (raw[i] !== 0x3a) if (raw[i++] === 0x0d) return false;
    const colon = i;
    if (colon === start || raw[colon + 1] !== 0x20) return false;
    if (isName(raw, start, colon, CONNECTION) || isName(raw, start, colon, KEEP_ALIVE)) return false;
    let eol = colon + 2;
    while (raw[eol] !== 0x0d) eol++;
    if (eol > colon + 2 && (trimmed(raw[colon + 2]) || trimmed(raw[eol - 1]))) return false;
    i = eol + 2;
  }
  return i === end;
}
