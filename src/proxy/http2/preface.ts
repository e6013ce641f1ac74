/** Telling an HTTP/2 prior-knowledge ("h2c") client from HTTP/1.x by its first bytes. */
import type { Socket } from "node:net";

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

/** How long a client may take to send enough bytes to tell HTTP/2 from HTTP/1.x. */
export const SNIFF_TIMEOUT_MS = 10_000;

/**
 * Reads `sock` until its first bytes tell HTTP/2 prior knowledge from HTTP/1.x, then pauses
 * it and calls `decided` once with those bytes (not given back: the caller unshifts or hands
 * them on). A client silent for SNIFF_TIMEOUT_MS, or that ends first, is destroyed.
 */
export function sniffHttp2(sock: Socket, decided: (h2: boolean, head: Buffer) => void): void {
  let head: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => sock.destroy(), SNIFF_TIMEOUT_MS);
  const done = (): void => {
    clearTimeout(timer);
    sock.off("data", onData);
    sock.off("end", onEnd);
    sock.pause();
  };
  const onEnd = (): void => {
    done();
    sock.destroy();
  };
  const onData = (c: Buffer): void => {
    head = head.length === 0 ? c : Buffer.concat([head, c]);
    const h2 = looksLikeHttp2(head);
    if (h2 === "need-more") return;
    done();
    decided(h2 === "yes", head);
  };
  sock.on("data", onData);
  sock.on("end", onEnd);
}
