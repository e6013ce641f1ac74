/**
 * One request of an HTTP/1.1 connection as the proxy core (proxy.ts) follows it: judged, held
 * until its framing is verified, then forwarded, and its response read (ResponseReader).
 */
import type { ChunkedDecoder } from "./chunked.js";
import type { RequestHead } from "./request.js";
import type { ResponseReader } from "./response.js";

export interface Exchange {
  readonly head: RequestHead;
  /** Header mismatch actions taken (flow text). */
  readonly actions: readonly string[];
  readonly path: string;
  readonly allowed: boolean;
  readonly rule: number | undefined;
  readonly started: number;
  /** Head and body pieces not yet sent (until committed). */
  held: Buffer[];
  heldBytes: number;
  committed: boolean;
  bodyLeft: number;
  chunked: ChunkedDecoder | undefined;
  bodyDone: boolean;
  discarded: number;
  reader: ResponseReader;
}
