/**
 * SVIDs as TLS wants them, and the tunnel's one check of a peer's certificate:
 *
 *   presented chain --validateX509Svid(the peer NODE's roots only, trust domain)--> SPIFFE ID
 *     client side: must be spiffe://<td>/node/<the peer we dialled>
 *     server side: must be spiffe://<td>/identity/<n> -> n, the source identity
 *
 * Each node signs with its own root (its CA file never leaves it); a certificate is checked
 * against the roots of the node it came from, so a node can speak only for what its own CA signed.
 */
import { createPrivateKey, X509Certificate } from "node:crypto";
import type { TLSSocket } from "node:tls";
import { peerChain } from "../../auth/handshake.js";
import { identityOfSpiffeId, type SpiffeId } from "../../spiffe/id.js";
import { validateX509Svid } from "../../spiffe/validate.js";
import type { WireCreds } from "./wire.js";

export const nodeSpiffeId = (td: string, node: string): string => `spiffe://${td}/node/${node}`;

const pem = (der: Buffer): string => new X509Certificate(der).toString();

/** cert, key and ca (PEM) of a TLS context. */
export function tlsCreds(
  c: WireCreds,
  roots: readonly string[],
): { cert: string; key: string; ca: string[] } {
  const key = createPrivateKey({ key: Buffer.from(c.key, "base64"), format: "der", type: "pkcs8" });
  return {
    cert: c.chain.map((d) => pem(Buffer.from(d, "base64"))).join(""),
    key: key.export({ type: "pkcs8", format: "pem" }).toString(),
    ca: roots.map((r) => pem(Buffer.from(r, "base64"))),
  };
}

/** The SPIFFE ID `s`'s peer presented, validated against `roots`; throws naming why not. */
export function peerSpiffeId(s: TLSSocket, roots: readonly string[], td: string): SpiffeId {
  const chain = peerChain(s);
  if (chain.length === 0) throw new Error("no certificate presented");
  if (roots.length === 0) throw new Error("no roots known for this peer");
  const v = validateX509Svid(
    chain,
    roots.map((r) => Buffer.from(r, "base64")),
    { trustDomain: td },
  );
  return v.id;
}

/** The source identity a client certificate names (spiffe://<td>/identity/<n>); throws otherwise. */
export function sourceIdentity(s: TLSSocket, roots: readonly string[], td: string): number {
  const id = peerSpiffeId(s, roots, td);
  const n = identityOfSpiffeId(id, td);
  if (n === undefined) throw new Error(`${id.uri} names no workload identity`);
  return n;
}
