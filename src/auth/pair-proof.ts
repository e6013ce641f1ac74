/**
 * The per-pair proof carried over a pooled node connection (channel.ts): each end of a pair
 * proves that its agent holds that identity's X.509-SVID *private key*, as the CertificateVerify
 * of a TLS handshake would, without a TLS handshake per pair.
 *
 *   request  (initiator): SVID chain of its end + ECDSA signature over
 *              "membrane-auth-pair-request-v1" | TLS exporter of the connection | id | src | dst | side | nonce
 *   response (responder): SVID chain of its end + ECDSA signature over
 *              "membrane-auth-pair-response-v1" | the same | sha256(the request's signature)
 *
 * The TLS exporter (RFC 8446 7.5, both ends compute it; nobody else can) binds a proof to the one
 * connection it was made on: a proof captured or replayed on another connection does not verify.
 * The request's id only grows on a connection (the responder refuses a repeated one), and the
 * response covers the initiator's fresh nonce and signature: neither side can be answered with an
 * old proof. Each chain is validated by the SPIFFE rules (spiffe/validate.ts) and must name the
 * identity expected; the signature is checked with the validated leaf's key.
 */
import { createHash, createPrivateKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { MembraneError } from "../errors.js";

export const EXPORTER_LABEL = "EXPORTER-membrane-auth-pair-v1";
export const EXPORTER_BYTES = 32;

export interface PairClaim {
  readonly id: number;
  readonly src: number;
  readonly dst: number;
  /** Which end the responder presents: s = the source, d = the destination. */
  readonly side: "s" | "d";
  /** base64 of 32 random bytes, chosen by the initiator. */
  readonly nonce: string;
}

/** The connection's keying material for proofs (both ends of one TLS session get the same bytes). */
export function exporterOf(s: TLSSocket): Buffer {
  return s.exportKeyingMaterial(EXPORTER_BYTES, EXPORTER_LABEL, Buffer.alloc(0));
}

const refused = (why: string): MembraneError =>
  new MembraneError("AUTH_HANDSHAKE_FAILED", `Cannot authenticate the pair: ${why}`);

function transcript(kind: "request" | "response", exporter: Buffer, c: PairClaim, reqSig?: Buffer): Buffer {
  const head = `membrane-auth-pair-${kind}-v1\n${exporter.toString("hex")}\n${c.id}\n${c.src}\n${c.dst}\n${c.side}\n${c.nonce}`; // prettier-ignore
  const tail = reqSig ? `\n${createHash("sha256").update(reqSig).digest("hex")}` : "";
  return Buffer.from(head + tail);
}

/** Private keys as OpenSSL objects, built once per SVID (serial) and kept in memory only. */
export class SigningKeys {
  private readonly m = new Map<string, KeyObject>();
  get(serial: string, pkcs8: () => Buffer): KeyObject {
    let k = this.m.get(serial);
    if (!k) {
      if (this.m.size > 256) this.m.clear();
      k = createPrivateKey({ key: pkcs8(), format: "der", type: "pkcs8" });
      this.m.set(serial, k);
    }
    return k;
  }
}

export function signRequest(key: KeyObject, exporter: Buffer, c: PairClaim): Buffer {
  return sign("sha256", transcript("request", exporter, c), key);
}

export function signResponse(key: KeyObject, exporter: Buffer, c: PairClaim, reqSig: Buffer): Buffer {
  return sign("sha256", transcript("response", exporter, c, reqSig), key);
}

function check(leaf: Buffer, data: Buffer, sig: Buffer, who: string): void {
  let ok = false;
  try {
    ok = verify("sha256", data, new X509Certificate(leaf).publicKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw refused(`the ${who}'s proof of its SVID key does not verify`);
}

/** Throws unless `sig` is the request's signature by the key of `leaf` (already validated). */
export function verifyRequest(leaf: Buffer, exporter: Buffer, c: PairClaim, sig: Buffer): void {
  check(leaf, transcript("request", exporter, c), sig, "initiator");
}

/** Throws unless `sig` is the response's signature by the key of `leaf` (already validated). */
export function verifyResponse(
  leaf: Buffer,
  exporter: Buffer,
  c: PairClaim,
  reqSig: Buffer,
  sig: Buffer,
): void {
  check(leaf, transcript("response", exporter, c, reqSig), sig, "responder");
}
