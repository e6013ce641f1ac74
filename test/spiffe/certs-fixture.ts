/** Certificates for the validator's tests: each rule of X509-SVID.md broken on purpose. */
import { webcrypto } from "node:crypto";
import * as x509 from "../../src/spiffe/x509.js";
import { newKeyPair, SIGN_ALG, type KeyPair } from "../../src/spiffe/certs.js";
import type { CertFields } from "../../src/spiffe/cert-fields.js";

export interface CertSpec {
  readonly ca?: boolean | undefined; // undefined: no basicConstraints
  readonly pathLen?: number;
  readonly ku?: number | undefined; // undefined: no keyUsage
  readonly kuCritical?: boolean;
  readonly eku?: readonly string[];
  readonly uris?: readonly string[];
  readonly sanCritical?: boolean;
  readonly subject?: string;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  /** Signer; absent = self-signed. */
  readonly issuer?: Issued;
}

export interface Issued {
  readonly cert: x509.X509Certificate;
  readonly der: Buffer;
  readonly keys: KeyPair;
}

const crypto = webcrypto as unknown as NonNullable<
  Parameters<typeof x509.X509CertificateGenerator.create>[1]
>;
const H = 3_600_000;

export async function mk(s: CertSpec): Promise<Issued> {
  const keys = await newKeyPair();
  const ext: x509.Extension[] = [];
  if (s.ca !== undefined) ext.push(new x509.BasicConstraintsExtension(s.ca, s.pathLen, true));
  if (s.ku !== undefined) ext.push(new x509.KeyUsagesExtension(s.ku, s.kuCritical ?? true));
  if (s.eku) ext.push(new x509.ExtendedKeyUsageExtension([...s.eku]));
  if (s.uris?.length) {
    ext.push(new x509.SubjectAlternativeNameExtension(s.uris.map((value) => ({ type: "url" as const, value })), s.sanCritical ?? false)); // prettier-ignore
  }
  const subject = s.subject ?? "O=test";
  const cert = await x509.X509CertificateGenerator.create(
    {
      subject,
      issuer: s.issuer ? s.issuer.cert.subject : subject,
      notBefore: s.notBefore ?? new Date(Date.now() - H),
      notAfter: s.notAfter ?? new Date(Date.now() + H),
      publicKey: keys.publicKey,
      signingKey: (s.issuer?.keys ?? keys).privateKey,
      signingAlgorithm: SIGN_ALG,
      extensions: ext,
    },
    crypto,
  );
  return { cert, der: Buffer.from(cert.rawData), keys };
}

export const KU = x509.KeyUsageFlags;
export const EKU = x509.ExtendedKeyUsage;

/** A root as the CA makes it, and a good leaf spec under it (tests override one field). */
export async function rootOf(td: string, o: Partial<CertSpec> = {}): Promise<Issued> {
  return mk({ ca: true, pathLen: 0, ku: KU.keyCertSign | KU.cRLSign, uris: [`spiffe://${td}`], subject: `CN=root ${td}`, ...o }); // prettier-ignore
}

export function goodLeaf(issuer: Issued, id = "spiffe://td.test/identity/300"): CertSpec {
  return { ca: false, ku: KU.digitalSignature, eku: [EKU.serverAuth, EKU.clientAuth], uris: [id], issuer };
}

/** What the validator used to read with @peculiar/x509. */
export function reference(der: Buffer): CertFields {
  const c = new x509.X509Certificate(der);
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const bc = c.getExtension(x509.BasicConstraintsExtension);
  const ku = c.getExtension(x509.KeyUsagesExtension);
  const eku = c.getExtension(x509.ExtendedKeyUsageExtension);
  return {
    notBefore: c.notBefore,
    notAfter: c.notAfter,
    subjectEmpty: c.subject === "",
    ...(san ? { san: { critical: san.critical, uris: san.names.items.filter((n) => n.type === "url").map((n) => n.value) } } : {}), // prettier-ignore
    ...(bc ? { basicConstraints: { critical: bc.critical, ca: bc.ca } } : {}),
    ...(ku ? { keyUsage: { critical: ku.critical, digitalSignature: (ku.usages & KU.digitalSignature) !== 0, keyCertSign: (ku.usages & KU.keyCertSign) !== 0, cRLSign: (ku.usages & KU.cRLSign) !== 0 } } : {}), // prettier-ignore
    ...(eku ? { extKeyUsage: [...eku.usages].map(String) } : {}),
  };
}
