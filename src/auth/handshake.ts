/**
 * One mutual-authentication handshake: TLS 1.3 with client and server certificates, the client
 * presenting the source identity's X.509-SVID and the server the destination's; each side
 * accepts the other only if its chain validates against the trust bundle by the SPIFFE rules
 * (spiffe/validate.ts) and names exactly the identity it expects.
 *
 *   client creds (source SVID) <--TLS 1.3 over a duplex pair or a socket--> server creds (destination SVID)
 *     each side: peer chain --validateX509Svid(bundle, trust domain)--> SPIFFE ID == expected?
 *
 * Both ends on this node: the agent runs both sides in-process over an in-memory duplex pair
 * (the same TLS code a cross-node handshake runs over TCP). Private keys go into the TLS
 * contexts only; no message or error carries them.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import { Duplex } from "node:stream";
import * as tls from "node:tls";
import { MembraneError } from "../errors.js";
import { validateX509Svid } from "../spiffe/validate.js";
import type { SvidValidationCache } from "../spiffe/validate-cache.js";

export interface TlsCreds {
  /** Leaf first, DER. */
  readonly chain: readonly Buffer[];
  /** PKCS#8 DER; handed to TLS only. */
  readonly key: () => Buffer;
}

export interface HandshakeSide {
  readonly creds: TlsCreds;
  /** The SPIFFE ID this side must see presented by the other. */
  readonly expectPeer: string;
}

export interface HandshakeParams {
  readonly client: HandshakeSide;
  readonly server: HandshakeSide;
  readonly bundle: readonly Buffer[];
  readonly trustDomain: string;
  readonly timeoutMs: number;
  readonly now?: () => number;
  /** Secure contexts already built for the two sides (peer-handshake.ts ContextCache): skips building them. */
  readonly contexts?: { readonly client: tls.SecureContext; readonly server: tls.SecureContext };
  /** Validations remembered across handshakes (spiffe/validate-cache.ts). */
  readonly cache?: SvidValidationCache;
}

export interface HandshakeResult {
  /** The earlier notAfter of the two validated leaves. */
  readonly notAfter: Date;
  readonly ms: number;
}

const refused = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${why}`);

const pem = (der: Buffer): string => new X509Certificate(der).toString();

function context(c: TlsCreds, bundle: readonly Buffer[]): tls.SecureContextOptions {
  const key = createPrivateKey({ key: c.key(), format: "der", type: "pkcs8" });
  return {
    key: key.export({ type: "pkcs8", format: "pem" }),
    cert: c.chain.map(pem).join(""),
    ca: bundle.map(pem),
    minVersion: "TLSv1.3",
    maxVersion: "TLSv1.3",
  };
}

/** The peer's chain as presented (leaf first, without self-signed roots). */
export function peerChain(s: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let c: tls.DetailedPeerCertificate | undefined = s.getPeerCertificate(true) as tls.DetailedPeerCertificate;
  const seen = new Set<string>();
  while (c && c.raw && !seen.has(c.fingerprint256) && out.length < 8) {
    seen.add(c.fingerprint256);
    if (out.length > 0 && c.issuer && JSON.stringify(c.issuer) === JSON.stringify(c.subject)) break;
    out.push(c.raw);
    c = c.issuerCertificate;
  }
  return out;
}

/** Checks what `s`'s peer presented; returns its leaf's notAfter or throws naming why. */
export function checkPeer(
  s: tls.TLSSocket,
  expect: string,
  bundle: readonly Buffer[],
  td: string,
  now: number,
  who: string,
  cache?: SvidValidationCache,
): Date {
  const chain = peerChain(s);
  if (chain.length === 0) throw refused(`the ${who} presented no certificate`);
  let v;
  try {
    v = cache ? cache.validate(chain, bundle, { trustDomain: td, now }) : validateX509Svid(chain, bundle, { trustDomain: td, now }); // prettier-ignore
  } catch (e) {
    throw refused(`the ${who}'s certificate is refused: ${(e as Error).message}`);
  }
  if (v.id.uri !== expect) throw refused(`the ${who} presented ${v.id.uri}, not ${expect}`);
  return v.notAfter;
}

/** A pair of connected in-memory streams. */
export function duplexPair(): [Duplex, Duplex] {
  const side = (other: () => Duplex | undefined): Duplex =>
    new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        other()?.push(chunk);
        cb();
      },
      final(cb) {
        other()?.push(null);
        cb();
      },
    });
  const a: Duplex = side(() => b);
  const b: Duplex = side(() => a);
  return [a, b];
}

/** Runs both sides in-process; resolves when both accepted each other, rejects naming why not. */
export async function localHandshake(p: HandshakeParams): Promise<HandshakeResult> {
  const start = performance.now();
  const now = (p.now ?? Date.now)();
  const [ca, sa] = duplexPair();
  let client: tls.TLSSocket | undefined;
  let server: tls.TLSSocket | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const done = new Promise<Date>((resolve, reject) => {
      timer = setTimeout(() => reject(refused(`no answer within ${p.timeoutMs} ms`)), p.timeoutMs);
      let got = 0;
      let earliest = new Date(8.64e15);
      const ok = (d: Date): void => {
        if (d < earliest) earliest = d;
        if (++got === 2) resolve(earliest);
      };
      server = new tls.TLSSocket(sa, {
        isServer: true,
        secureContext: p.contexts?.server ?? tls.createSecureContext(context(p.server.creds, p.bundle)),
        requestCert: true,
        rejectUnauthorized: true,
      });
      server.on("secure", () => {
        try {
          ok(
            checkPeer(
              server as tls.TLSSocket,
              p.server.expectPeer,
              p.bundle,
              p.trustDomain,
              now,
              "client",
              p.cache,
            ),
          );
        } catch (e) {
          reject(e as Error);
        }
      });
      server.on("error", (e) => reject(refused(`the server side failed: ${e.message}`)));
      client = tls.connect({
        socket: ca,
        secureContext: p.contexts?.client ?? tls.createSecureContext(context(p.client.creds, p.bundle)),
        rejectUnauthorized: true,
        checkServerIdentity: () => undefined, // SVIDs name a SPIFFE ID, not a host: checkPeer checks it
      });
      client.on("secureConnect", () => {
        try {
          ok(
            checkPeer(
              client as tls.TLSSocket,
              p.client.expectPeer,
              p.bundle,
              p.trustDomain,
              now,
              "server",
              p.cache,
            ),
          );
        } catch (e) {
          reject(e as Error);
        }
      });
      client.on("error", (e) => reject(refused(`the client side failed: ${e.message}`)));
    });
    const notAfter = await done;
    return { notAfter, ms: performance.now() - start };
  } finally {
    if (timer) clearTimeout(timer);
    client?.destroy();
    server?.destroy();
  }
}
