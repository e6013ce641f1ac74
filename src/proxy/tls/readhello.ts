/**
 * The first step of both TLS proxies: hold a connection's first bytes until
 * they make a whole ClientHello, bounded in size and in time.
 *
 *   client bytes --buffer (<= maxHelloBytes + record headers, <= helloTimeoutMs)--> parseClientHello
 *     ok    -> {sni, alpn, bytes}   every byte read so far, to replay upstream or into TLS
 *     error -> {reason, bytes}      not TLS, malformed, too large, too slow, ended inside
 *     gone  -> the client closed before sending anything (nothing to answer, nothing to record)
 *
 * The socket is left paused with no listener of ours, ready to be piped or
 * wrapped. The caller attaches an 'error' listener before calling.
 */
import type { Socket } from "node:net";
import { DEFAULT_MAX_HELLO_BYTES, parseClientHello } from "./clienthello.js";

export interface HelloLimits {
  /** Largest ClientHello handshake message accepted. */
  readonly maxHelloBytes: number;
  /** Time a client has from its first byte to a complete ClientHello. */
  readonly helloTimeoutMs: number;
}

export const DEFAULT_HELLO_LIMITS: HelloLimits = {
  maxHelloBytes: DEFAULT_MAX_HELLO_BYTES,
  helloTimeoutMs: 10_000,
};

/**
 * Record headers allowed on top of maxHelloBytes: a ClientHello split into
 * many tiny records (legal, and a known trick to hide the SNI) is refused
 * once its headers exceed this.
 */
const RECORD_OVERHEAD_BYTES = 4096;

export type HelloOutcome =
  | {
      readonly kind: "ok";
      readonly sni: string | undefined;
      readonly alpn: readonly string[];
      readonly bytes: Buffer;
    }
  | { readonly kind: "error"; readonly reason: string }
  | { readonly kind: "gone" };

/** Reads from `client` (after `head`, bytes the caller already read) until `done` can be told. */
export function readClientHello(
  client: Socket,
  head: Buffer | undefined,
  limits: HelloLimits,
  done: (outcome: HelloOutcome) => void,
): void {
  let buf = head ?? Buffer.alloc(0);
  let finished = false;
  const maxBuffered = limits.maxHelloBytes + RECORD_OVERHEAD_BYTES;

  const finish = (o: HelloOutcome): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    client.removeListener("data", onData);
    client.removeListener("end", onEnd);
    client.removeListener("close", onClose);
    client.pause();
    done(o);
  };
  const check = (): void => {
    const r = parseClientHello(buf, limits.maxHelloBytes);
    if (r.kind === "ok") return finish({ kind: "ok", sni: r.sni, alpn: r.alpn, bytes: buf });
    if (r.kind === "error") return finish({ kind: "error", reason: `ClientHello: ${r.reason}` });
    if (buf.length > maxBuffered) finish({ kind: "error", reason: "ClientHello: too many record bytes" });
  };
  const onData = (d: Buffer): void => {
    buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
    check();
  };
  const onEnd = (): void =>
    finish(
      buf.length === 0
        ? { kind: "gone" }
        : { kind: "error", reason: "connection ended inside the ClientHello" },
    );
  const onClose = (): void => finish({ kind: "gone" });
  const timer = setTimeout(
    () => finish({ kind: "error", reason: `no complete ClientHello within ${limits.helloTimeoutMs} ms` }),
    limits.helloTimeoutMs,
  );

  client.on("data", onData);
  client.on("end", onEnd);
  client.on("close", onClose);
  if (buf.length > 0) check();
  if (!finished) client.resume();
}

/** A TCP reset when the socket allows one (it must be a TCP socket), else a plain destroy. */
export function resetSocket(s: Socket): void {
  if (s.destroyed) return;
  try {
    s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}
