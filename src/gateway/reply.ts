/** The gateway's own HTTP/1.1 answers (404, 3xx, 5xx...), written by exchange.ts. */
const REASONS: Record<number, string> = { 301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found", 421: "Misdirected Request", 413: "Content Too Large", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout" }; // prettier-ignore

/** A response of the gateway's own; `headOnly` (a HEAD request): the same head, no body. */
export function reply(
  status: number,
  close: boolean,
  extra: readonly string[] = [],
  headOnly = false,
): Buffer {
  const body = `${REASONS[status] ?? "Error"}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}`,
    ...extra,
    "content-type: text/plain",
    `content-length: ${body.length}`,
  ];
  if (close) lines.push("connection: close");
  return Buffer.from(lines.join("\r\n") + "\r\n\r\n" + (headOnly ? "" : body), "latin1");
}
