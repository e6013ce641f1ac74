/**
 * The client's request as an HTTP/1.1 backend gets it (exchange.ts): the route's outgoing
 * request (filters.ts) with X-Forwarded-For (the client's, else the client's address) and
 * X-Forwarded-Proto, its body framed by Content-Length (a chunked body was read whole).
 *
 *   parsed head --forwardedFields--> the fields routes match on and filters change
 *   OutgoingRequest + body --requestWire--> one Buffer: one string for the head, one copy of the body
 */
import { NOT_FORWARDED, type HeaderField } from "../proxy/http/request.js";
import type { OutgoingRequest } from "./filters.js";

/** The client's fields the route sees and the backend gets: the parsed head's, less the framing and hop-by-hop ones. */
export function forwardedFields(all: readonly HeaderField[]): readonly HeaderField[] {
  // The common request has none of them: its list as it is.
  return all.some((h) => NOT_FORWARDED.has(h.lower)) ? all.filter((h) => !NOT_FORWARDED.has(h.lower)) : all;
}

export interface WireParams {
  readonly request: OutgoingRequest;
  /** The client's own X-Forwarded-For, kept as it is when there is one. */
  readonly forwardedFor: string | undefined;
  readonly peer: string;
  readonly proto: "http" | "https";
  readonly body: Buffer;
  /** The client's request had a body framing (a length, even 0, or chunked). */
  readonly framed: boolean;
}

export function requestWire(p: WireParams): Buffer {
  const { request, body } = p;
  // Built as one string (no array of lines to join), written once with the body after it.
  let text = `${request.method} ${request.target} HTTP/1.1\r\n`;
  for (const h of request.headers) text += `${h.name}: ${h.value}\r\n`;
  if (!p.forwardedFor) text += `x-forwarded-for: ${p.peer}\r\n`;
  text += `x-forwarded-proto: ${p.proto}\r\n`;
  if (body.length > 0 || p.framed) text += `content-length: ${body.length}\r\n`;
  text += "\r\n";
  if (body.length === 0) return Buffer.from(text, "latin1");
  // latin1: one byte per character, so the head's length in bytes is text.length.
  const out = Buffer.allocUnsafe(text.length + body.length);
  out.write(text, 0, "latin1");
  body.copy(out, text.length);
  return out;
}
