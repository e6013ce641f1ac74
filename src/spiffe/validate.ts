/**
 * Validation of an X.509-SVID against a trust bundle, by the rules of X509-SVID.md (sections 2-5)
 * and RFC 5280 path validation, refusing each case the rules forbid with a message naming it:
 *
 *   chain (leaf first, then intermediates) + bundle (roots) --validateX509Svid--> SPIFFE ID | error
 *
 * Leaf: exactly one URI SAN, a spiffe:// ID of the expected trust domain with a non-root path, not
 * a CA, key usage present, critical, with digitalSignature and without keyCertSign/cRLSign, an
 * extended key usage (if any) with serverAuth and clientAuth, a critical SAN when the subject is
 * empty, within its validity. Signing certificates: CA with keyCertSign, their SPIFFE ID (if any)
 * without a path, valid now, signature checked, path length constraints kept. Bounded: at most
 * MAX_CHAIN certificates of at most MAX_CERT_BYTES each. Pure (the time is a parameter).
 *
 * Parsing, the bulk of the cost: the leaf by OpenSSL (signature, key, names) and its judged fields
 * straight from its DER (cert-fields.ts); signing certificates with @peculiar/x509 too, the
 * bundle's roots once per exact bytes when the caller keeps a ParsedRoots (validate-cache.ts).
 */
import { X509Certificate as NodeCert, type KeyObject } from "node:crypto";
import * as x509 from "./x509.js";
import { MembraneError } from "../errors.js";
import { parseSpiffeId, type SpiffeId } from "./id.js";
import { readCertFields, type CertFields } from "./cert-fields.js";

export const MAX_CHAIN = 8;
export const MAX_CERT_BYTES = 16 * 1024;
const MAX_BUNDLE = 64;

export interface ValidateOptions {
  readonly trustDomain: string;
  /** ms since epoch; default now. */
  readonly now?: number;
}

export interface ValidSvid {
  readonly id: SpiffeId;
  readonly notAfter: Date;
  /** The times between which every certificate of the validated path is valid (ms since epoch): the same answer holds for any `now` in it. */
  readonly window: { readonly from: number; readonly until: number };
  /** The leaf's public key, parsed once with the chain (a proof of possession is checked with it). */
  readonly leafKey: KeyObject;
}

/** One certificate parsed by both libraries; its public key made on first use and kept. */
export interface ParsedCert {
  readonly p: x509.X509Certificate;
  readonly n: NodeCert;
  readonly key: () => KeyObject;
}

function invalid(why: string): MembraneError {
  return new MembraneError("SPIFFE_SVID_INVALID", `Cannot accept the X.509-SVID: ${why}`);
}

function parse(der: Uint8Array, what: string): ParsedCert {
  if (der.length === 0 || der.length > MAX_CERT_BYTES) throw invalid(`${what} is empty or larger than ${MAX_CERT_BYTES} bytes`); // prettier-ignore
  try {
    const n = new NodeCert(der);
    let key: KeyObject | undefined;
    return { p: new x509.X509Certificate(der), n, key: () => (key ??= n.publicKey) };
  } catch {
    throw invalid(`${what} is not a DER X.509 certificate`);
  }
}

const MAX_PARSED_ROOTS = 256;

/**
 * The bundle's roots parsed once per exact DER bytes, not at every validation: parsing a
 * certificate and decoding its extensions is most of a validation's cost (milliseconds each on a
 * busy node), and a bundle's roots are the same across thousands of validations. A parsed
 * certificate is a pure function of its bytes; every check that depends on the time or on the
 * chain (validity, signatures, path length) is still made at each validation. Failures are not
 * kept (each names its own error again). Bounded: past MAX_PARSED_ROOTS it starts over.
 */
export class ParsedRoots {
  private readonly m = new Map<string, ParsedCert>();

  get(der: Uint8Array, what: string): ParsedCert {
    const k = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString("base64");
    const have = this.m.get(k);
    if (have) return have;
    const c = parse(der, what);
    if (this.m.size >= MAX_PARSED_ROOTS) this.m.clear();
    this.m.set(k, c);
    return c;
  }

  get size(): number {
    return this.m.size;
  }
}

function uriSans(c: x509.X509Certificate): { uris: string[]; critical: boolean } {
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san ? san.names.items.filter((n) => n.type === "url").map((n) => n.value) : [];
  return { uris, critical: san?.critical ?? false };
}

function checkTime(c: { notBefore: Date; notAfter: Date }, now: number, what: string): void {
  if (c.notBefore.getTime() > now) throw invalid(`${what} is not valid yet (notBefore ${c.notBefore.toISOString()})`); // prettier-ignore
  if (c.notAfter.getTime() < now) throw invalid(`${what} has expired (notAfter ${c.notAfter.toISOString()})`);
}

/** The leaf: OpenSSL's parse (signature, key, names) and its fields read from the DER (cert-fields.ts). */
interface ParsedLeaf {
  readonly n: NodeCert;
  readonly f: CertFields;
}

function parseLeaf(der: Uint8Array): ParsedLeaf {
  if (der.length === 0 || der.length > MAX_CERT_BYTES) throw invalid(`the leaf is empty or larger than ${MAX_CERT_BYTES} bytes`); // prettier-ignore
  try {
    return { n: new NodeCert(der), f: readCertFields(der) };
  } catch (e) {
    throw invalid(`the leaf is not a DER X.509 certificate (${(e as Error).message})`);
  }
}

function checkLeaf(leaf: CertFields, o: ValidateOptions): SpiffeId {
  const uris = leaf.san?.uris ?? [];
  if (uris.length !== 1) throw invalid(`the leaf has ${uris.length} URI SANs (exactly one is required)`);
  let id: SpiffeId;
  try {
    id = parseSpiffeId(uris[0] ?? "");
  } catch (e) {
    throw invalid(`the leaf's URI SAN is not a SPIFFE ID: ${(e as Error).message}`);
  }
  if (id.trustDomain !== o.trustDomain) throw invalid(`the leaf is of trust domain ${id.trustDomain}, not ${o.trustDomain}`); // prettier-ignore
  if (id.path === "")
    throw invalid("the leaf's SPIFFE ID has no path (a trust domain's ID names no workload)");
  if (leaf.subjectEmpty && !leaf.san?.critical)
    throw invalid("the leaf has an empty subject and a non-critical SAN extension");
  if (leaf.basicConstraints?.ca) throw invalid("the leaf is a CA certificate (basicConstraints cA=true)");
  const ku = leaf.keyUsage;
  if (!ku) throw invalid("the leaf has no key usage extension");
  if (!ku.critical) throw invalid("the leaf's key usage extension is not critical");
  if (!ku.digitalSignature) throw invalid("the leaf's key usage lacks digitalSignature");
  if (ku.keyCertSign || ku.cRLSign) throw invalid("the leaf's key usage has keyCertSign or cRLSign");
  const eku = leaf.extKeyUsage;
  if (eku) {
    if (!eku.includes(x509.ExtendedKeyUsage.serverAuth) || !eku.includes(x509.ExtendedKeyUsage.clientAuth)) {
      throw invalid("the leaf's extended key usage lacks serverAuth or clientAuth");
    }
  }
  return id;
}

function checkSigner(c: ParsedCert, what: string): void {
  const bc = c.p.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw invalid(`${what} is not a CA certificate (basicConstraints cA is not true)`);
  const ku = c.p.getExtension(x509.KeyUsagesExtension);
  if (!ku || !(ku.usages & x509.KeyUsageFlags.keyCertSign))
    throw invalid(`${what} lacks key usage keyCertSign`);
  if (!ku.critical) throw invalid(`${what}'s key usage extension is not critical`);
  for (const u of uriSans(c.p).uris) {
    let id: SpiffeId | undefined;
    try {
      id = parseSpiffeId(u);
    } catch {
      continue; // a non-SPIFFE URI on a signing certificate is not ours to judge
    }
    if (id.path !== "")
      throw invalid(`${what}'s SPIFFE ID ${id.uri} has a path (a signing certificate's must not)`);
  }
}

/**
 * Validates `chain` (leaf first) against `bundle`; returns the leaf's SPIFFE ID or throws
 * SPIFFE_SVID_INVALID. `roots`: the bundle's certificates parsed ahead (SvidValidationCache).
 */
export function validateX509Svid(
  chain: readonly Uint8Array[],
  bundle: readonly Uint8Array[],
  o: ValidateOptions,
  roots?: ParsedRoots,
): ValidSvid {
  const now = o.now ?? Date.now();
  if (chain.length === 0) throw invalid("the chain is empty");
  if (chain.length > MAX_CHAIN) throw invalid(`the chain has more than ${MAX_CHAIN} certificates`);
  if (bundle.length === 0 || bundle.length > MAX_BUNDLE) throw invalid(`the bundle has 0 or more than ${MAX_BUNDLE} roots`); // prettier-ignore
  const leaf = parseLeaf(chain[0] as Uint8Array);
  const certs = chain.slice(1).map((d, i) => parse(d, `chain[${i + 1}]`));
  const anchors = bundle.map((d, i) => (roots ? roots.get(d, `bundle[${i}]`) : parse(d, `bundle[${i}]`)));
  const id = checkLeaf(leaf.f, o);
  checkTime(leaf.f, now, "the leaf");
  // Walk up: each step finds the certificate that issued the current one, among the chain's
  // intermediates (each used once) or the bundle's roots, where the walk ends. Names are compared
  // as OpenSSL prints them (the leaf is parsed by OpenSSL only).
  let cur: { readonly n: NodeCert } = leaf;
  let below = 0; // intermediates between `cur` and the leaf: pathLenConstraint counts them
  const left = [...certs];
  const window = { from: leaf.f.notBefore.getTime(), until: leaf.f.notAfter.getTime() };
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    // Names and signature only: OpenSSL's checkIssued also wants keyCertSign, which checkSigner names.
    const signedBy = (c: ParsedCert): boolean => cur.n.issuer === c.n.subject && verifies(cur.n, c);
    const root = anchors.find(signedBy);
    const next = root ?? left.find(signedBy);
    if (!next) throw invalid(depth === 0 ? "the leaf is not signed by a root of the bundle" : `chain[${depth}] is not signed by a root of the bundle`); // prettier-ignore
    const what = root ? "the bundle's root" : `intermediate ${next.p.subject}`;
    checkSigner(next, what);
    checkTime(next.p, now, what);
    const pl = next.p.getExtension(x509.BasicConstraintsExtension)?.pathLength;
    if (pl !== undefined && below > pl) throw invalid(`${what} allows ${pl} intermediates below it, the chain has ${below}`); // prettier-ignore
    window.from = Math.max(window.from, next.p.notBefore.getTime());
    window.until = Math.min(window.until, next.p.notAfter.getTime());
    if (root) return { id, notAfter: leaf.f.notAfter, window, leafKey: leaf.n.publicKey };
    left.splice(left.indexOf(next), 1);
    cur = next;
    below++;
  }
  throw invalid("the chain is too long");
}

function verifies(c: NodeCert, by: ParsedCert): boolean {
  try {
    return c.verify(by.key());
  } catch {
    return false; // a key OpenSSL cannot use for this signature
  }
}
