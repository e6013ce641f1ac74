/**
 * What the HTTP/1.1 proxy core (proxy.ts) is given: its limits and its dependencies.
 */
import type { Socket } from "node:net";
import type { HttpRequestLike } from "../../policy/l7/http.js";
import type { L7PolicyLookup, L7Sink } from "../types.js";
import { DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS } from "./request.js";

export interface HttpProxyLimits {
  readonly maxHeadBytes: number;
  readonly maxHeaders: number;
  /** Body bytes held back (not sent upstream) until the request's framing is verified. */
  readonly maxBufferedBody: number;
  /** Body bytes of a denied request read and discarded before the connection is closed instead. */
  readonly maxDiscardBody: number;
  /** Unparsed client bytes held while a response is pending, before the client is paused. */
  readonly maxPendingBytes: number;
  readonly idleTimeoutMs: number;
}

export const DEFAULT_HTTP_LIMITS: HttpProxyLimits = {
  maxHeadBytes: DEFAULT_MAX_HEAD_BYTES,
  maxHeaders: DEFAULT_MAX_HEADERS,
  maxBufferedBody: 64 * 1024,
  maxDiscardBody: 1024 * 1024,
  maxPendingBytes: 1024 * 1024,
  idleTimeoutMs: 60_000,
};

export interface HttpProxyDeps {
  readonly lookup: L7PolicyLookup;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly sink: L7Sink;
  readonly limits?: Partial<HttpProxyLimits>;
  /** Scheme shown in flows' URLs: "https" when the proxy terminated the client's TLS. Default "http". */
  readonly scheme?: "http" | "https";
  /** Sees each allowed request exactly as the rules judged it (the differential tests compare it with upstream's view). */
  readonly onJudged?: (judged: HttpRequestLike) => void;
  /**
   * How plain TCP sockets are read and written: "native" (default when the addon is built:
   * native-io.ts) or "stream" (Node's streams; also set by MEMBRANE_PROXY_IO=stream). TLS
   * sockets always use streams.
   */
  readonly io?: "native" | "stream";
}
