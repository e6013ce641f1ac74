/** Telling an HTTP/2 prior-knowledge ("h2c") client from HTTP/1.x by its first bytes. */

/** The client connection preface (RFC 9113 §3.4), sent before any frame. */
export const HTTP2_PREFACE: Buffer = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * "yes" when `buf` starts with the whole preface, "need-more" while what has
 * arrived is a proper prefix of it (including nothing at all), "no" as soon
 * as one byte differs. An HTTP/1.x request line can never start with "PRI *
 * HTTP/2.0" (PRI is reserved for this), so the answer is unambiguous.
 */
export function looksLikeHttp2(buf: Buffer): "yes" | "no" | "need-more" {
  const n = Math.min(buf.length, HTTP2_PREFACE.length);
  if (buf.compare(HTTP2_PREFACE, 0, n, 0, n) !== 0) return "no";
  return n === HTTP2_PREFACE.length ? "yes" : "need-more";
}
