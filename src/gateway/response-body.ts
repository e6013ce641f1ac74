/**
 * Where a backend response's body ends, once forward-h1.ts has parsed its head
 * (parseResponseHead): the body part of the proxy's ResponseReader
 * (src/proxy/http/response.ts), started from the parsed framing, so that the
 * gateway reads each head once (the reader would parse it again).
 *
 *   framing none    -> done at once
 *           length  -> done after that many bytes
 *           chunked -> the proxy's ChunkedDecoder (lenient, as the reader) says where it ends
 *           close   -> every byte until the backend's FIN (endOfInput)
 */
import { ChunkedDecoder } from "../proxy/http/chunked.js";
import type { ResponseFraming } from "../proxy/http/response.js";

export class ResponseBody {
  private remaining: number;
  private readonly chunked: ChunkedDecoder | undefined;
  /** The body ended: bytes after it are not the response's. */
  done: boolean;

  constructor(private readonly framing: ResponseFraming) {
    this.remaining = framing.kind === "length" ? framing.length : 0;
    this.chunked = framing.kind === "chunked" ? new ChunkedDecoder({ strict: false }) : undefined;
    this.done = framing.kind === "none" || (framing.kind === "length" && framing.length === 0);
  }

  /** How many bytes of `buf` from `at` on are body (the rest, if any, follows the response); or why it is broken. */
  take(buf: Buffer, at: number): number | { readonly error: string } {
    const avail = buf.length - at;
    if (this.done || avail === 0) return 0;
    if (this.framing.kind === "length") {
      const n = Math.min(this.remaining, avail);
      this.remaining -= n;
      this.done = this.remaining === 0;
      return n;
    }
    if (this.chunked) {
      const r = this.chunked.push(at === 0 ? buf : buf.subarray(at));
      if ("error" in r) return { error: r.error };
      this.done = r.done;
      return r.consumed;
    }
    return avail; // close-delimited
  }

  /** The backend closed its side: a close-delimited body ends there; any other is complete only if done. */
  endOfInput(): boolean {
    if (this.framing.kind === "close") this.done = true;
    return this.done;
  }
}
