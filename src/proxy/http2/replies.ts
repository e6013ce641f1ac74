/**
 * Responses the HTTP/2 proxy sends itself, on one stream.
 *
 * Plain HTTP gets what the HTTP/1.1 proxy sends (403 "Access denied\r\n",
 * 502 "Bad Gateway\r\n", text/plain). A gRPC request gets what Envoy's
 * local reply sends for gRPC (`Http::Utility::sendLocalReply` with
 * `is_grpc`), which is how both Envoy's RBAC filter and Cilium's
 * `cilium.l7policy` filter deny gRPC calls: a trailers-only response,
 * `:status 200`, `content-type: application/grpc`, `grpc-status` mapped
 * from the HTTP status (`Grpc::Utility::httpToGrpcStatus`: 403 -> 7
 * PERMISSION_DENIED, 502 -> 14 UNAVAILABLE) and the body text as
 * `grpc-message`. Deviation, by choice: Envoy puts Cilium's whole HTTP body
 * there percent-encoded ("Access denied%0D%0A"); we send the text without
 * the HTTP line ending ("Access denied"), which is what a gRPC client
 * should show.
 */
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { ACCESS_DENIED_BODY } from "../http/replies.js";

export { ACCESS_DENIED_BODY };
export const GRPC_PERMISSION_DENIED = 7;
export const GRPC_UNAVAILABLE = 14;

/** Envoy's `Grpc::Utility::httpToGrpcStatus`. */
export function grpcStatusForHttp(status: number): number {
  switch (status) {
    case 400:
      return 13; // INTERNAL
    case 401:
      return 16; // UNAUTHENTICATED
    case 403:
      return GRPC_PERMISSION_DENIED;
    case 404:
      return 12; // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_UNAVAILABLE;
    default:
      return 2; // UNKNOWN
  }
}

/** Answers the stream with `status` and `body` (plain) or its gRPC trailers-only form. */
export function localReply(
  stream: ServerHttp2Stream,
  p: { grpc: boolean; head: boolean; status: number; body: string },
): void {
  if (stream.destroyed || stream.headersSent) return;
  if (p.grpc) {
    const headers: OutgoingHttpHeaders = {
      [constants.HTTP2_HEADER_STATUS]: 200,
      "content-type": "application/grpc",
      "grpc-status": String(grpcStatusForHttp(p.status)),
      "grpc-message": p.body.replace(/\r\n$/, ""),
    };
    stream.respond(headers, { endStream: true });
    return;
  }
  const headers: OutgoingHttpHeaders = {
    [constants.HTTP2_HEADER_STATUS]: p.status,
    "content-length": String(Buffer.byteLength(p.body)),
    "content-type": "text/plain",
  };
  if (p.head) {
    stream.respond(headers, { endStream: true });
    return;
  }
  stream.respond(headers);
  stream.end(p.body);
}

export const BAD_GATEWAY_BODY = "Bad Gateway\r\n";

const CODE_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

/** RST_STREAM / GOAWAY error code name (RFC 9113 §7). */
export function h2CodeName(code: number): string {
  return CODE_NAMES[code] ?? `0x${code.toString(16)}`;
}
