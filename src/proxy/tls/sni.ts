/**
 * TLS by server name, without termination (Cilium's `serverNames` alone).
 *
 *   client --readClientHello--> SNI --every stage's serverNames--> denied: TCP reset
 *                                                              allowed: connect original dst,
 *                                                                       replay the bytes read,
 *                                                                       splice both ways
 *
 * The proxy never decrypts: the handshake is between client and server,
 * and the client verifies the server's certificate as usual. A connection
 * with no SNI, with a ClientHello that does not parse, that is too large or
 * too slow, or with no known policy is reset (fail closed). The policy is
 * looked up when the ClientHello is complete; a later change does not
 * affect a connection already spliced.
 *
 * The caller's server should use `allowHalfOpen: true`.
 */
import type { Socket } from "node:net";
import {
  guardSink,
  l7Parser,
  lookupKey,
  type ConnectionInfo,
  type L7Event,
  type L7LookupResult,
  type L7PolicyLookup,
  type L7Sink,
} from "../types.js";
import { sniAdmitted } from "./policy.js";
import { DEFAULT_HELLO_LIMITS, readClientHello, resetSocket, type HelloLimits } from "./readhello.js";

export interface TlsSniLimits extends HelloLimits {
  /** A spliced connection with no bytes either way for this long is closed (Envoy's tcp_proxy default). */
  readonly idleTimeoutMs: number;
}

export const DEFAULT_TLS_SNI_LIMITS: TlsSniLimits = { ...DEFAULT_HELLO_LIMITS, idleTimeoutMs: 3_600_000 };

export interface TlsSniDeps {
  readonly lookup: L7PolicyLookup;
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly sink: L7Sink;
  readonly limits?: Partial<TlsSniLimits>;
}

/** How long a closing side may take to flush before it is destroyed. */
const LINGER_MS = 2000;

/**
 * Takes over `client`; returns at once. `head`: bytes of the connection the
 * caller has already read (they are parsed first and replayed upstream).
 */
export function handleTlsSniConnection(
  client: Socket,
  info: ConnectionInfo,
  deps: TlsSniDeps,
  head?: Buffer,
): void {
  const { emit, refuse } = tlsFlows(client, info, deps.sink);
  const limits: TlsSniLimits = { ...DEFAULT_TLS_SNI_LIMITS, ...deps.limits };

  if (!policyFor(deps.lookup, info))
    return refuse({ verdict: "error", reason: "no TLS policy for this connection" });
  readClientHello(client, head, limits, (h) => {
    if (h.kind === "gone") return void client.destroy();
    if (h.kind === "error") return refuse({ verdict: "error", reason: h.reason });
    const sni = h.sni === undefined ? {} : { sni: h.sni };
    const policy = policyFor(deps.lookup, info);
    if (!policy) return refuse({ verdict: "error", reason: "no TLS policy for this connection", ...sni });
    let admitted: boolean;
    try {
      admitted = sniAdmitted(policy, h.sni, false);
    } catch {
      return refuse({ verdict: "error", reason: "serverNames do not compile", ...sni });
    }
    if (!admitted) {
      const reason = h.sni === undefined ? "no SNI in the ClientHello" : "SNI matches no serverNames";
      return refuse({ verdict: "denied", reason, ...sni });
    }
    splice(client, info, deps, limits, h.bytes, (failure) =>
      emit(
        failure === undefined
          ? { verdict: "forwarded", ...sni }
          : { verdict: "error", reason: failure, ...sni },
      ),
    );
  });
}

/** The connection's policy if every stage is an SNI policy; undefined (fail closed) otherwise. */
function policyFor(lookup: L7PolicyLookup, info: ConnectionInfo): L7LookupResult | undefined {
  try {
    const p = lookup.forConnection(lookupKey(info));
    return p && l7Parser(p, "tls") ? p : undefined;
  } catch {
    return undefined; // a failing lookup is an unknown policy
  }
}

/**
 * What every TLS handler (SNI, interception) starts a connection with: its flows go to `sink`
 * (guarded: a throwing sink cannot break the connection), a refusal is a flow and a reset, and a
 * socket error ends the client.
 */
export function tlsFlows(
  client: Socket,
  info: ConnectionInfo,
  to: L7Sink,
): { emit: (e: TlsFlow) => void; refuse: (e: TlsFlow) => void } {
  const sink = guardSink(to);
  const emit = (e: TlsFlow): void => sink(tlsEvent(info, e));
  const refuse = (e: TlsFlow): void => {
    emit(e);
    resetSocket(client);
  };
  client.on("error", () => client.destroy());
  return { emit, refuse };
}

/** A TLS flow's own fields (tlsEvent adds the connection's). */
type TlsFlow = Pick<L7Event, "verdict"> & Partial<L7Event>;

export function tlsEvent(info: ConnectionInfo, e: TlsFlow): L7Event {
  return {
    type: "tls",
    srcIdentity: info.srcIdentity,
    dstIdentity: info.dstIdentity,
    endpoint: info.endpoint,
    direction: info.direction,
    ...e,
  };
}

/**
 * Connects to the original destination, sends `bytes` first, then copies
 * both ways with backpressure. `outcome` is told once: connected (undefined), or why not.
 * A reset on one side resets the other; a clean close ends the other side
 * after what is buffered.
 */
function splice(
  client: Socket,
  info: ConnectionInfo,
  deps: TlsSniDeps,
  limits: TlsSniLimits,
  bytes: Buffer,
  outcome: (failure: string | undefined) => void,
): void {
  let up: Socket;
  try {
    up = deps.connectUpstream(info.originalDst.host, info.originalDst.port);
  } catch (e) {
    outcome(`upstream connection failed: ${e instanceof Error ? e.message : String(e)}`);
    return resetSocket(client);
  }
  // Half-closes pass through: upstream's FIN must not stop the client's remaining bytes.
  up.allowHalfOpen = true;
  let connected = false;
  const onConnect = (): void => {
    connected = true;
    outcome(undefined);
  };
  if (up.connecting) up.once("connect", onConnect);
  else onConnect();
  up.on("error", (e: NodeJS.ErrnoException) => {
    if (!connected) {
      connected = true; // told once
      outcome(`upstream connection failed: ${e.code ?? e.message}`);
    }
    resetSocket(client);
  });
  client.on("error", () => resetSocket(up));
  up.on("close", () => linger(client));
  client.on("close", () => linger(up));
  client.setTimeout(limits.idleTimeoutMs, () => {
    client.destroy();
    up.destroy();
  });
  client.setNoDelay(true);
  up.setNoDelay(true);
  if (bytes.length > 0) up.write(bytes);
  client.pipe(up);
  up.pipe(client);
}

function linger(s: Socket): void {
  if (s.destroyed) return;
  s.end();
  const t = setTimeout(() => s.destroy(), LINGER_MS);
  t.unref();
  s.once("close", () => clearTimeout(t));
}
