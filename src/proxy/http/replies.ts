/** Responses the HTTP proxy writes itself. */

/** Cilium's Envoy answers a request denied by L7 policy with this body. */
export const ACCESS_DENIED_BODY = "Access denied\r\n";

export function forbidden(close: boolean): Buffer {
  return reply(403, "Forbidden", ACCESS_DENIED_BODY, close);
}

export function badRequest(): Buffer {
  return reply(400, "Bad Request", "Bad Request\r\n", true);
}

export function badGateway(): Buffer {
  return reply(502, "Bad Gateway", "Bad Gateway\r\n", true);
}

function reply(status: number, text: string, body: string, close: boolean): Buffer {
  return Buffer.from(
    `HTTP/1.1 ${status} ${text}\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\n` +
      "content-type: text/plain\r\n" +
      (close ? "connection: close\r\n" : "") +
      "\r\n" +
      body,
    "latin1",
  );
}
