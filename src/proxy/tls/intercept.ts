/**
 * TLS interception (Cilium's `terminatingTLS` + HTTP rules [+ `originatingTLS`]).
 *
 *   client --readClientHello--> SNI --serverNames (if any)--> denied: TCP reset
 *     --TLS server (terminatingTLS cert/key; client certs required if it has a CA)-->
 *     decrypted HTTP/1.1 --handleHttpConnection (the HTTP rules)--> 403 | forward
 *     forward --originate--> originatingTLS ? TLS to the original dst (servername = SNI,
 *                                              verified against trustedCA or the system CAs)
 *                                           : plaintext to the original dst (as Cilium)
 *
 * Both TLS legs offer only ALPN http/1.1: the HTTP proxy speaks HTTP/1.1.
 * An upstream whose certificate does not verify fails the request with 502
 * (and a "tls" error event saying why). Secrets come from a TlsSecretStore;
 * a secret that cannot be loaded resets the connection with an error event.
 *
 * Without `originatingTLS` the proxy sends the decrypted requests upstream
 * in plaintext: Cilium's tls_wrapper uses a raw socket upstream when the
 * policy allows and has no client TLS context. Write originatingTLS to keep
 * the second leg encrypted.
 */
import { isIP, type Socket } from "node:net";
import tls from "node:tls";
import { MembraneError } from "../../errors.js";
import type { TlsContext } from "../../policy/types.js";
import { handleHttpConnection, type HttpProxyDeps } from "../http/proxy.js";
import { l7Parser, lookupKey, type ConnectionInfo, type L7Event, type L7LookupResult } from "../types.js";
import { sniAdmitted, stageTlsContext } from "./policy.js";
import { DEFAULT_HELLO_LIMITS, readClientHello, resetSocket, type HelloLimits } from "./readhello.js";
import type { LoadedTlsContext, TlsSecretStore } from "./secrets.js";
import { tlsFlows } from "./sni.js";

export interface TlsInterceptLimits extends HelloLimits {
  /** Time for the client's TLS handshake after its ClientHello. */
  readonly handshakeTimeoutMs: number;
}

export const DEFAULT_TLS_INTERCEPT_LIMITS: TlsInterceptLimits = {
  ...DEFAULT_HELLO_LIMITS,
  handshakeTimeoutMs: 10_000,
};

export interface TlsInterceptDeps extends HttpProxyDeps {
  /** Plain TCP to the original destination; TLS is layered on it here. */
  readonly connectUpstream: (host: string, port: number) => Socket;
  readonly secrets: TlsSecretStore;
  readonly tlsLimits?: Partial<TlsInterceptLimits>;
}

const ALPN = ["http/1.1"];

// Secure contexts per loaded secret (a reload is a new object): a memo, not state.
const serverContexts = new WeakMap<LoadedTlsContext, tls.SecureContext>();
const clientContexts = new WeakMap<LoadedTlsContext, tls.SecureContext>();

/** Takes over `client`; returns at once. `head`: bytes of the connection the caller already read. */
export function handleTlsInterceptConnection(
  client: Socket,
  info: ConnectionInfo,
  deps: TlsInterceptDeps,
  head?: Buffer,
): void {
  const { emit, refuse } = tlsFlows(client, info, deps.sink);
  const limits: TlsInterceptLimits = { ...DEFAULT_TLS_INTERCEPT_LIMITS, ...deps.tlsLimits };

  const early = contexts(policyFor(deps, info));
  if (typeof early === "string") return refuse({ verdict: "error", reason: early });
  readClientHello(client, head, limits, (h) => {
    if (h.kind === "gone") return void client.destroy();
    if (h.kind === "error") return refuse({ verdict: "error", reason: h.reason });
    const sni = h.sni === undefined ? {} : { sni: h.sni };
    const policy = policyFor(deps, info);
    const ctx = contexts(policy);
    if (typeof ctx === "string" || !policy)
      return refuse({ verdict: "error", reason: typeof ctx === "string" ? ctx : "no TLS policy", ...sni });
    let admitted: boolean;
    try {
      admitted = sniAdmitted(policy, h.sni, true);
    } catch {
      return refuse({ verdict: "error", reason: "serverNames do not compile", ...sni });
    }
    if (!admitted) {
      const reason = h.sni === undefined ? "no SNI in the ClientHello" : "SNI matches no serverNames";
      return refuse({ verdict: "denied", reason, ...sni });
    }
    let server: LoadedTlsContext;
    let origin: LoadedTlsContext | undefined;
    let serverCtx: tls.SecureContext;
    try {
      server = deps.secrets.load(ctx.terminating, "terminatingTLS");
      origin = ctx.originating && deps.secrets.load(ctx.originating, "originatingTLS");
      serverCtx = secureContext(serverContexts, server);
    } catch (e) {
      const reason = e instanceof MembraneError ? e.message : "TLS secret unusable";
      return refuse({ verdict: "error", reason, ...sni });
    }
    terminate(client, h.bytes, server, serverCtx, limits, emit, sni, (tlsClient) =>
      handleHttpConnection(tlsClient, info, {
        lookup: deps.lookup,
        sink: deps.sink,
        ...(deps.limits ? { limits: deps.limits } : {}),
        scheme: "https",
        connectUpstream: (host, port) => originate(deps, host, port, h.sni, origin, emit, sni),
      }),
    );
  });
}

function policyFor(deps: TlsInterceptDeps, info: ConnectionInfo): L7LookupResult | undefined {
  try {
    return deps.lookup.forConnection(lookupKey(info));
  } catch {
    return undefined; // a failing lookup is an unknown policy
  }
}

interface Contexts {
  readonly terminating: TlsContext;
  readonly originating: TlsContext | undefined;
}

/** The contexts to use, or why the connection cannot be intercepted (fail closed). */
function contexts(p: L7LookupResult | undefined): Contexts | string {
  if (!p) return "no TLS policy for this connection";
  if (!l7Parser(p, "http")) return "not an HTTP policy on every stage";
  const t = stageTlsContext(p, "terminatingTLS");
  const o = stageTlsContext(p, "originatingTLS");
  if (t === undefined) return "no terminatingTLS in the policy";
  if (t === "conflict") return "stages name different terminatingTLS secrets";
  if (o === "conflict") return "stages name different originatingTLS secrets";
  return { terminating: t, originating: o };
}

function secureContext(
  memo: WeakMap<LoadedTlsContext, tls.SecureContext>,
  l: LoadedTlsContext,
): tls.SecureContext {
  let c = memo.get(l);
  if (!c) {
    const key = l.privateKey();
    c = tls.createSecureContext({
      ...(l.certificate !== undefined && key !== undefined ? { cert: l.certificate, key } : {}),
      // No CA: Node's default trust store (Mozilla's CAs) verifies upstream.
      ...(l.trustedCA !== undefined ? { ca: l.trustedCA } : {}),
    });
    memo.set(l, c);
  }
  return c;
}

/** Runs the server side of the client's handshake on the bytes read so far, then hands over the decrypted stream. */
function terminate(
  client: Socket,
  bytes: Buffer,
  server: LoadedTlsContext,
  secureCtx: tls.SecureContext,
  limits: TlsInterceptLimits,
  emit: (e: Pick<L7Event, "verdict"> & Partial<L7Event>) => void,
  sni: { sni?: string },
  then: (s: tls.TLSSocket) => void,
): void {
  // The TLS socket reads what is in the socket's buffer before the kernel's bytes.
  client.unshift(bytes);
  const mtls = server.trustedCA !== undefined; // Envoy: a CA on the server side requires client certificates
  const t = new tls.TLSSocket(client, {
    isServer: true,
    secureContext: secureCtx,
    ALPNProtocols: ALPN,
    requestCert: mtls,
    rejectUnauthorized: mtls,
  });
  // The HTTP proxy resets with resetAndDestroy, which a TLS socket refuses: reset the TCP below.
  t.resetAndDestroy = () => {
    resetSocket(client);
    t.destroy();
    return t;
  };
  let settled = false;
  /** The handshake did not complete: one flow, then a reset. */
  const failed = (reason: string): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    emit({ verdict: "error", reason, ...sni });
    t.resetAndDestroy();
  };
  const timer = setTimeout(() => failed("client TLS handshake timed out"), limits.handshakeTimeoutMs);
  t.on("error", (e: NodeJS.ErrnoException) => failed(`client TLS handshake failed: ${e.code ?? e.message}`));
  // A client that rejects our certificate may just close (TLS 1.3): no error event here.
  t.on("end", () => failed("client closed the connection during the TLS handshake"));
  t.on("close", () => failed("client closed the connection during the TLS handshake"));
  t.once("secure", () => {
    settled = true;
    clearTimeout(timer);
    then(t);
  });
}

/** The upstream leg: TLS verified against the originatingTLS CA, or plain TCP without originatingTLS. */
function originate(
  deps: TlsInterceptDeps,
  host: string,
  port: number,
  clientSni: string | undefined,
  origin: LoadedTlsContext | undefined,
  emit: (e: Pick<L7Event, "verdict"> & Partial<L7Event>) => void,
  sni: { sni?: string },
): Socket {
  const raw = deps.connectUpstream(host, port);
  if (!origin) return raw;
  const up = tls.connect({
    socket: raw,
    host,
    ...(clientSni !== undefined && isIP(clientSni) === 0 ? { servername: clientSni } : {}),
    secureContext: secureContext(clientContexts, origin),
    ALPNProtocols: ALPN,
    rejectUnauthorized: true,
  });
  let secured = false;
  up.once("secureConnect", () => (secured = true));
  up.on("error", (e: NodeJS.ErrnoException) => {
    if (!secured)
      emit({ verdict: "error", reason: `upstream TLS handshake failed: ${e.code ?? e.message}`, ...sni });
  });
  raw.on("error", () => up.destroy());
  return up;
}
