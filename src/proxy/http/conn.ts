/**
 * One end of a proxied HTTP/1.1 connection as the proxy core (proxy.ts) uses it: bytes in
 * through `ConnEvents`, bytes out through `write`, flow control, and the ways to end.
 *
 *   net.Socket (TLS, or no native addon) --streamConn: Node's streams--------------> ByteConn
 *   plain TCP socket --native-io.ts: the fd read and written through the addon-------^
 *
 * Both give the same events in the same order for the same bytes: `data` (a Buffer the
 * receiver may keep), `end` (the peer's FIN), `gone` (error, reset or closed; once).
 */
import type { Socket } from "node:net";

export interface ConnEvents {
  /** Bytes received; the buffer is the receiver's to keep. */
  readonly data: (d: Buffer) => void;
  /** The peer sent its FIN (half-close): no more data will come. */
  readonly end: () => void;
  /** Error, reset or closed: nothing more comes or goes. May come more than once. */
  readonly gone: () => void;
}

export interface ByteConn {
  /**
   * Writes `b` (not to be changed afterwards), in order with earlier writes; false: stop
   * feeding it until `onceDrain` (a Node stream's highWaterMark, or the native conn's full
   * socket). Written bytes go out before a later end, destroy or reset.
   */
  write(b: Buffer): boolean;
  /** `f` once every queued byte is written. */
  onceDrain(f: () => void): void;
  /** Stops reading (flow control). */
  pause(): void;
  resume(): void;
  /** `onIdle` once nothing was read or written for `ms`. */
  idle(ms: number, onIdle: () => void): void;
  /** Our FIN after everything queued; then reads (and drops) until the peer closes, at most `lingerMs`. */
  endAndLinger(lingerMs: number): void;
  destroy(): void;
  /** Abortive close (RST). */
  reset(): void;
}

/** A net.Socket (TLS included) through Node's streams. */
export function streamConn(s: Socket, ev: ConnEvents): ByteConn {
  s.on("data", ev.data);
  s.on("end", ev.end);
  s.on("error", ev.gone);
  s.on("close", ev.gone);
  return {
    write: (b) => s.write(b),
    onceDrain: (f) => void s.once("drain", f),
    pause: () => void s.pause(),
    resume: () => void s.resume(),
    idle: (ms, onIdle) => void s.setTimeout(ms, onIdle),
    endAndLinger: (lingerMs) => {
      s.end();
      s.resume();
      const t = setTimeout(() => s.destroy(), lingerMs);
      t.unref();
      s.once("close", () => clearTimeout(t));
    },
    destroy: () => void s.destroy(),
    reset: () => {
      try {
        s.resetAndDestroy();
      } catch {
        // Not a TCP handle (e.g. a TLSSocket of an intercepted connection): close it plainly.
        s.destroy();
      }
    },
  };
}
