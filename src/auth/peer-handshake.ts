/**
 * The cross-node handshake: TLS 1.3 between two agents over TCP, each presenting the X.509-SVID
 * of its own end of the pair and checking that the other presents the identity expected.
 *
 *   initiator (node holding the first packet)        responder (node of the other end)
 *     tls.connect(SNI "p<src>-<dst>-<s|d>.auth")  -->  SNI says which identity it must present
 *     client cert: SVID of its own end                  (s: the source, d: the destination);
 *                                                       refused unless that identity has an endpoint here
 *     checkPeer(server chain) == expected ID       <->  checkPeer(client chain) == the other end's ID
 *                                                       its kernel entry (if its policy needs one)
 *     waits for ACCEPTED (1 byte)                  <--  ACCEPTED, or the connection closes
 *
 * The server answers last because in TLS 1.3 the client finishes before the server has checked
 * the client's certificate: without the byte the client could believe a refused handshake.
 * Secure contexts are built once per SVID (serial) and trust bundle, not per handshake.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { Socket } from "node:net";
import * as tls from "node:tls";
import { MembraneError } from "../errors.js";
import { checkPeer, peerChain, type TlsCreds } from "./handshake.js";
import type { SvidValidationCache } from "../spiffe/validate-cache.js";
import { CHANNEL_ALPN } from "./pair-proof.js";

export const ACCEPTED = 0x01;

export interface PairRole {
  readonly src: number;
  readonly dst: number;
  /** Which end of the pair the responder presents: s = source, d = destination. */
  readonly serverSide: "s" | "d";
}

export function sniOf(r: PairRole): string {
  return `p${r.src}-${r.dst}-${r.serverSide}.auth.membrane`;
}

/** The pair a client's SNI names, or undefined for anything else (hostile input: strict). */
export function parseSni(name: string | undefined): PairRole | undefined {
  const m = /^p([1-9][0-9]{0,7})-([1-9][0-9]{0,7})-([sd])\.auth\.membrane$/.exec(name ?? "");
  if (!m) return undefined;
  const src = Number(m[1]);
  const dst = Number(m[2]);
  if (src > 0x01ffffff || dst > 0x01ffffff) return undefined;
  return { src, dst, serverSide: m[3] as "s" | "d" };
}

const refused = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${why}`);

/** Secure contexts per (SVID serial, bundle revision); the key goes into OpenSSL only. */
export class ContextCache {
  private readonly m = new Map<string, tls.SecureContext>();
  get(serial: string, creds: TlsCreds, bundle: readonly Buffer[], bundleRev: number): tls.SecureContext {
    const k = `${serial}|${bundleRev}`;
    let c = this.m.get(k);
    if (!c) {
      if (this.m.size > 256) this.m.clear();
      const key = createPrivateKey({ key: creds.key(), format: "der", type: "pkcs8" });
      c = tls.createSecureContext({
        key: key.export({ type: "pkcs8", format: "pem" }),
        cert: creds.chain.map((d) => new X509Certificate(d).toString()).join(""),
        ca: bundle.map((d) => new X509Certificate(d).toString()),
        minVersion: "TLSv1.3",
        maxVersion: "TLSv1.3",
      });
      this.m.set(k, c);
    }
    return c;
  }
}

export interface ClientParams {
  readonly socket: Socket;
  readonly role: PairRole;
  readonly context: tls.SecureContext;
  readonly expectPeer: string;
  readonly bundle: readonly Buffer[];
  readonly trustDomain: string;
  readonly timeoutMs: number;
  readonly cache?: SvidValidationCache;
}

export interface PeerResult {
  readonly notAfter: Date;
  /** The chain the peer presented (public certificates; kept to re-check against a new bundle). */
  readonly chain: Buffer[];
}

/** The initiator's side; resolves once the responder accepted, rejects naming why not. */
export function clientHandshake(p: ClientParams): Promise<PeerResult> {
  return new Promise<PeerResult>((resolve, reject) => {
    let result: PeerResult | undefined;
    let done = false;
    const finish = (e: Error | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      c.destroy();
      if (e) reject(e);
      else if (result) resolve(result);
    };
    const timer = setTimeout(() => finish(refused(`no answer within ${p.timeoutMs} ms`)), p.timeoutMs);
    const c = tls.connect({
      socket: p.socket,
      secureContext: p.context,
      servername: sniOf(p.role),
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
      checkServerIdentity: () => undefined, // SVIDs name a SPIFFE ID, not a host: checkPeer checks it
    });
    c.on("secureConnect", () => {
      try {
        const notAfter = checkPeer(
          c,
          p.expectPeer,
          p.bundle,
          p.trustDomain,
          Date.now(),
          "peer node",
          p.cache,
        );
        result = { notAfter, chain: peerChain(c) };
      } catch (e) {
        finish(e as Error);
      }
    });
    c.on("data", (d: Buffer) => {
      if (!result) return finish(refused("the peer node answered before the handshake"));
      finish(d[0] === ACCEPTED ? undefined : refused("the peer node refused the pair"));
    });
    c.on("error", (e) => finish(refused(`the peer node's side failed: ${e.message}`)));
    c.on("close", () => finish(refused("the peer node closed the connection (it refused the pair)")));
  });
}

export interface ServerParams {
  readonly socket: Socket;
  /** The context to present for the pair the SNI names; a rejection aborts the handshake. */
  readonly contextFor: (role: PairRole) => Promise<tls.SecureContext>;
  /** Checks the client's chain for the pair and records it; resolves true to answer ACCEPTED. */
  readonly accept: (role: PairRole, peer: tls.TLSSocket) => Promise<void>;
  readonly timeoutMs: number;
  readonly onRefused: (why: string) => void;
  /** A pooled connection (SNI `channel.sni`): this node's certificate, then the connection is handed over (channel-server.ts). */
  readonly channel?: {
    readonly sni: string;
    readonly context: () => Promise<tls.SecureContext>;
    readonly onSecure: (s: tls.TLSSocket) => void;
  };
}

const NO_CERT = (): tls.SecureContext => tls.createSecureContext({ minVersion: "TLSv1.3" });

/** The responder's side of one connection; never throws (a refusal closes the connection). */
export function serverHandshake(p: ServerParams): void {
  let role: PairRole | undefined;
  let pooled = false;
  const timer = setTimeout(() => fail("no handshake within the bound"), p.timeoutMs);
  const s = new tls.TLSSocket(p.socket, {
    isServer: true,
    secureContext: NO_CERT(),
    requestCert: true,
    rejectUnauthorized: true,
    // Pooled connections' protocol v2 (pair-proof.ts); a client that offers none gets none (v1).
    ALPNProtocols: [CHANNEL_ALPN],
    SNICallback: (name, cb) => {
      if (p.channel && name === p.channel.sni) {
        pooled = true;
        return void p.channel.context().then(
          (ctx) => cb(null, ctx),
          (e: unknown) => cb(e as Error, undefined),
        );
      }
      role = parseSni(name);
      if (!role) return cb(new Error(`the server name ${JSON.stringify(name.slice(0, 80))} names no pair`), undefined); // prettier-ignore
      p.contextFor(role).then(
        (ctx) => cb(null, ctx),
        (e: unknown) => cb(e as Error, undefined),
      );
    },
  });
  let failed = false;
  function fail(why: string): void {
    if (failed) return;
    failed = true;
    clearTimeout(timer);
    p.onRefused(why);
    s.destroy();
    p.socket.destroy();
  }
  s.on("error", (e) => fail(e.message));
  s.on("secure", () => {
    if (pooled && p.channel) {
      clearTimeout(timer);
      failed = true; // from now on the pooled connection's own handlers judge it
      return p.channel.onSecure(s);
    }
    if (!role) return fail("no server name");
    p.accept(role, s).then(
      () => {
        clearTimeout(timer);
        s.end(Buffer.from([ACCEPTED]));
      },
      (e: unknown) => fail((e as Error).message),
    );
  });
}
