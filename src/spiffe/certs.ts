/**
 * Building SPIFFE certificates (X509-SVID.md) with @peculiar/x509 over WebCrypto, EC P-256:
 *
 *   root (signing certificate): cA=true, pathLen 0 (no intermediates: no path length surprises),
 *     keyUsage keyCertSign|cRLSign (critical), URI SAN = the trust domain's own ID spiffe://<td>;
 *   leaf (X.509-SVID): cA=false, keyUsage digitalSignature (critical), EKU serverAuth+clientAuth,
 *     exactly one URI SAN = the SPIFFE ID; Subject "O=membrane" (SPIFFE needs no CN).
 */
import { randomBytes, webcrypto } from "node:crypto";
import * as x509 from "./x509.js";

export const EC_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
export const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;
/** WebCrypto's types as @peculiar/x509 names them (this project compiles without the DOM lib). */
type X509Crypto = NonNullable<Parameters<typeof x509.X509CertificateGenerator.create>[1]>;
export type KeyPair = x509.X509CertificateCreateSelfSignedParams["keys"];
export type Key = KeyPair["privateKey"];
const crypto = webcrypto as unknown as X509Crypto;

/** A key pair whose private half can be exported once (PKCS#8) for the file or the workload. */
export async function newKeyPair(): Promise<KeyPair> {
  return crypto.subtle.generateKey(EC_ALG, true, ["sign", "verify"]);
}

export async function exportPkcs8(key: Key): Promise<Buffer> {
  return Buffer.from(await crypto.subtle.exportKey("pkcs8", key));
}

export async function exportSpki(key: Key): Promise<ArrayBuffer> {
  return crypto.subtle.exportKey("spki", key);
}

export async function importPkcs8(der: Uint8Array): Promise<KeyPair> {
  const privateKey = await crypto.subtle.importKey("pkcs8", der, EC_ALG, true, ["sign"]);
  const jwk = await crypto.subtle.exportKey("jwk", privateKey);
  delete jwk.d;
  const publicKey = await crypto.subtle.importKey("jwk", { ...jwk, key_ops: ["verify"] }, EC_ALG, true, ["verify"]); // prettier-ignore
  return { privateKey, publicKey };
}

/** 16 random bytes, the top bit cleared (a positive INTEGER, as RFC 5280 wants). */
function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] ?? 0) & 0x7f;
  return b.toString("hex");
}

export interface RootParams {
  readonly trustDomain: string;
  readonly keys: KeyPair;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export async function createRoot(p: RootParams): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serial(),
      name: `O=membrane, CN=membrane SPIFFE root ${p.trustDomain} ${p.notBefore.toISOString()}`,
      notBefore: p.notBefore,
      notAfter: p.notAfter,
      keys: p.keys,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: `spiffe://${p.trustDomain}` }]),
        await x509.SubjectKeyIdentifierExtension.create(p.keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );
}

export interface LeafParams {
  readonly spiffeId: string;
  readonly publicKey: Key;
  readonly issuer: x509.X509Certificate;
  readonly issuerKey: Key;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export async function createLeaf(p: LeafParams): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create(
    {
      serialNumber: serial(),
      subject: "O=membrane",
      issuer: p.issuer.subject,
      notBefore: p.notBefore,
      notAfter: p.notAfter,
      publicKey: p.publicKey,
      signingKey: p.issuerKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([
          x509.ExtendedKeyUsage.serverAuth,
          x509.ExtendedKeyUsage.clientAuth,
        ]),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: p.spiffeId }]),
        await x509.SubjectKeyIdentifierExtension.create(p.publicKey, false, crypto),
        await x509.AuthorityKeyIdentifierExtension.create(p.issuer.publicKey, false, crypto),
      ],
    },
    crypto,
  );
}
