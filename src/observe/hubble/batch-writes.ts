/**
 * Many gRPC messages per write for a server stream (the agent's GetFlows, the relay's).
 *
 *   call.write(m1), call.write(m2), ... (buffered while the first is on its way)
 *     grpc-js alone:  _write(m1) --wait for the HTTP/2 write to finish--> _write(m2) --wait--> ...
 *     batched:        _write(m1) ... _writev([m2..mN]) --all handed to the HTTP/2 stream at once--> one callback
 *
 * grpc-js's server stream is an object-mode Writable with only `_write`: it hands the HTTP/2 stream one
 * message, waits for that write to complete, then the next. Each completion costs a turn of the event
 * loop; with any timer running in the process (the agent's reader, the bench's producer) a turn waits in
 * poll for it, and a stream fell from about 100,000 to 3,000-6,000 messages/s (checked with plain
 * node:http2 too: 3 ms of work every 10 ms was enough). This adds the standard `_writev`, which the
 * Writable calls with everything buffered: each chunk goes through the stream's own `_write` (grpc-js
 * framing, interceptors, errors) without waiting for the previous one, and the Writable continues when
 * the last completes. Backpressure is unchanged: write() still returns false past the high-water mark.
 */
import type { Writable } from "node:stream";

type WriteCallback = (error?: Error | null) => void;

interface WritevChunk {
  readonly chunk: unknown;
  readonly encoding: BufferEncoding;
}

/** Gives a grpc-js server stream (any Writable with `_write`) a `_writev`; returns the same stream. */
export function batchWrites<T extends Writable>(stream: T): T {
  const s = stream as unknown as {
    _write(chunk: unknown, encoding: BufferEncoding, cb: WriteCallback): void;
    _writev?: (chunks: WritevChunk[], cb: WriteCallback) => void;
  };
  if (typeof s._write !== "function") return stream;
  s._writev = (chunks, cb) => {
    let left = chunks.length;
    let failed = false;
    if (left === 0) return cb();
    for (const c of chunks)
      s._write.call(stream, c.chunk, c.encoding, (e) => {
        if (failed) return;
        if (e) {
          failed = true;
          return cb(e);
        }
        if (--left === 0) cb();
      });
  };
  return stream;
}
