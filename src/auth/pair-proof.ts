/**
 * The per-pair proof carried over a pooled node connection (channel.ts): each end of a pair
 * proves that its agent holds that identity's X.509-SVID *private key*, as the CertificateVerify
 * of a TLS handshake would, without a TLS handshake per pair.
 *
 *   request  (initiator): SVID chain of its end + ECDSA signature over
 *              "membrane-auth-pair-request-v1" | TLS exporter of the connection | id | src | dst | side | nonce
 *   response (responder): SVID chain of its end + ECDSA signature over
 *              "membrane-auth-pair-response-v1" | the same | sha256(the request's signature, or of nothing)
 *
 * The TLS exporter (RFC 8446 7.5, both ends compute it; nobody else can) binds a proof to the one
 * connection it was made on: a proof captured or replayed on another connection does not verify.
 * The request's id only grows on a connection (the responder refuses a repeated one), and the
 * response covers the initiator's fresh nonce and signature: neither side can be answered with an
 * old proof. Each chain is validated by the SPIFFE rules (spiffe/validate.ts) and must name the
 * identity expected; the signature is checked with the validated leaf's key.
 *
 * Once per (connection, SVID), not per pair (protocol v2, negotiated by ALPN CHANNEL_ALPN): a side
 * signs only the first message that presents a given leaf on a connection; later messages on that
 * connection presenting the same leaf carry no signature (Possession below remembers, each side
 * for the other). Why the argument still holds:
 *   - what a signature proves is possession of the leaf's key by the agent at the other end of THIS
 *     connection (the exporter); a key once held is not "un-held" by the time of the next pair, and
 *     nothing but that agent can write on the connection (TLS 1.3 under its node certificate, which
 *     chains to the root its own node record publishes): an unsigned message on it comes from the
 *     agent that proved the key;
 *   - freshness and pair binding stay per pair: each answer names the request id (only growing) and
 *     TLS protects the order and integrity of every message; the chain is still validated for every
 *     pair (expiry, trust domain, the node's roots, the identity expected), so an expired, rotated
 *     (a new leaf: a new proof) or no longer trusted SVID is refused as before;
 *   - what revokes a pair is unchanged: the answering agent still decides each pair (a revoked
 *     identity, an end without an endpoint: "no"), and a bundle change closes every connection,
 *     and the proofs remembered with it.
 * An unsigned message presenting a leaf not proven on the connection is a protocol violation: the
 * connection ends (a new one starts with no proofs remembered).
 */
import { createHash, createPrivateKey, sign, verify, type KeyObject } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { MembraneError } from "../errors.js";

export const EXPORTER_LABEL = "EXPORTER-membrane-auth-pair-v1";
export const EXPORTER_BYTES = 32;
/** The ALPN name of protocol v2 of pooled connections: a proof once per (connection, SVID). */
export const CHANNEL_ALPN = "membrane-auth-pair-v2";
/** Leaves remembered as proven per connection and side; past it a side signs every message again. */
export const MAX_PROVEN = 4096;

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

const EMPTY = Buffer.alloc(0);

function transcript(kind: "request" | "response", exporter: Buffer, c: PairClaim, reqSig?: Buffer): Buffer {
  const head = `membrane-auth-pair-${kind}-v1\n${exporter.toString("hex")}\n${c.id}\n${c.src}\n${c.dst}\n${c.side}\n${c.nonce}`; // prettier-ignore
  const tail =
    kind === "response"
      ? `\n${createHash("sha256")
          .update(reqSig ?? EMPTY)
          .digest("hex")}`
      : "";
  return Buffer.from(head + tail);
}

/**
 * Private keys as OpenSSL objects, built once per SVID (serial) and kept in memory only; and the
 * serials whose key was proven in process to match its certificate (a local pair: pair-handshake.ts).
 */
export class SigningKeys {
  private readonly m = new Map<string, KeyObject>();
  readonly proven = new Set<string>();
  get(serial: string, pkcs8: () => Buffer): KeyObject {
    let k = this.m.get(serial);
    if (!k) {
      if (this.m.size > 256) {
        this.m.clear();
        this.proven.clear();
      }
      k = createPrivateKey({ key: pkcs8(), format: "der", type: "pkcs8" });
      this.m.set(serial, k);
    }
    return k;
  }
}

export function signRequest(key: KeyObject, exporter: Buffer, c: PairClaim): Buffer {
  return sign("sha256", transcript("request", exporter, c), key);
}

export function signResponse(
  key: KeyObject,
  exporter: Buffer,
  c: PairClaim,
  reqSig: Buffer | undefined,
): Buffer {
  return sign("sha256", transcript("response", exporter, c, reqSig), key);
}

function check(leafKey: KeyObject, data: Buffer, sig: Buffer, who: string): void {
  let ok = false;
  try {
    ok = verify("sha256", data, leafKey, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw refused(`the ${who}'s proof of its SVID key does not verify`);
}

/** Throws unless `sig` is the request's signature by `leafKey` (the validated leaf's: ValidSvid.leafKey). */
export function verifyRequest(leafKey: KeyObject, exporter: Buffer, c: PairClaim, sig: Buffer): void {
  check(leafKey, transcript("request", exporter, c), sig, "initiator");
}

/** Throws unless `sig` is the response's signature by `leafKey` (the validated leaf's). */
export function verifyResponse(
  leafKey: KeyObject,
  exporter: Buffer,
  c: PairClaim,
  reqSig: Buffer | undefined,
  sig: Buffer,
): void {
  check(leafKey, transcript("response", exporter, c, reqSig), sig, "responder");
}

/** Leaves (certificate bytes) whose key was proven on one connection, by one side (protocol v2). */
export class Possession {
  private readonly m = new Set<string>();
  private static key(leaf: Buffer): string {
    return createHash("sha256").update(leaf).digest("base64");
  }
  has(leaf: Buffer): boolean {
    return this.m.has(Possession.key(leaf));
  }
  /** Remembers the leaf; false (nothing remembered) past MAX_PROVEN. */
  add(leaf: Buffer): boolean {
    if (this.m.size >= MAX_PROVEN) return false;
    this.m.add(Possession.key(leaf));
    return true;
  }
  get size(): number {
    return this.m.size;
  }
}
