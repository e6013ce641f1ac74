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
 */
import { X509Certificate as NodeCert, type KeyObject } from "node:crypto";
import * as x509 from "./x509.js";
import { MembraneError } from "../errors.js";
import { parseSpiffeId, type SpiffeId } from "./id.js";

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

interface Parsed {
  readonly p: x509.X509Certificate;
  readonly n: NodeCert;
}

function invalid(why: string): MembraneError {
  return new MembraneError("SPIFFE_SVID_INVALID", `Cannot accept the X.509-SVID: ${why}`);
}

function parse(der: Uint8Array, what: string): Parsed {
  if (der.length === 0 || der.length > MAX_CERT_BYTES) throw invalid(`${what} is empty or larger than ${MAX_CERT_BYTES} bytes`); // prettier-ignore
  try {
    return { p: new x509.X509Certificate(der), n: new NodeCert(der) };
  } catch {
    throw invalid(`${what} is not a DER X.509 certificate`);
  }
}

function uriSans(c: x509.X509Certificate): { uris: string[]; critical: boolean } {
  const san = c.getExtension(x509.SubjectAlternativeNameExtension);
  const uris = san ? san.names.items.filter((n) => n.type === "url").map((n) => n.value) : [];
  return { uris, critical: san?.critical ?? false };
}

function checkTime(c: Parsed, now: number, what: string): void {
  if (c.p.notBefore.getTime() > now) throw invalid(`${what} is not valid yet (notBefore ${c.p.notBefore.toISOString()})`); // prettier-ignore
  if (c.p.notAfter.getTime() < now)
    throw invalid(`${what} has expired (notAfter ${c.p.notAfter.toISOString()})`);
}

function checkLeaf(leaf: Parsed, o: ValidateOptions): SpiffeId {
  const { uris, critical } = uriSans(leaf.p);
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
  if (leaf.p.subject === "" && !critical)
    throw invalid("the leaf has an empty subject and a non-critical SAN extension");
  const bc = leaf.p.getExtension(x509.BasicConstraintsExtension);
  if (bc?.ca) throw invalid("the leaf is a CA certificate (basicConstraints cA=true)");
  const ku = leaf.p.getExtension(x509.KeyUsagesExtension);
  if (!ku) throw invalid("the leaf has no key usage extension");
  if (!ku.critical) throw invalid("the leaf's key usage extension is not critical");
  if (!(ku.usages & x509.KeyUsageFlags.digitalSignature))
    throw invalid("the leaf's key usage lacks digitalSignature");
  if (ku.usages & (x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)) {
    throw invalid("the leaf's key usage has keyCertSign or cRLSign");
  }
  const eku = leaf.p.getExtension(x509.ExtendedKeyUsageExtension);
  if (eku) {
    const u = eku.usages.map(String);
    if (!u.includes(x509.ExtendedKeyUsage.serverAuth) || !u.includes(x509.ExtendedKeyUsage.clientAuth)) {
      throw invalid("the leaf's extended key usage lacks serverAuth or clientAuth");
    }
  }
  return id;
}

function checkSigner(c: Parsed, what: string): void {
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

/** Validates `chain` (leaf first) against `bundle`; returns the leaf's SPIFFE ID or throws SPIFFE_SVID_INVALID. */
export function validateX509Svid(
  chain: readonly Uint8Array[],
  bundle: readonly Uint8Array[],
  o: ValidateOptions,
): ValidSvid {
  const now = o.now ?? Date.now();
  if (chain.length === 0) throw invalid("the chain is empty");
  if (chain.length > MAX_CHAIN) throw invalid(`the chain has more than ${MAX_CHAIN} certificates`);
  if (bundle.length === 0 || bundle.length > MAX_BUNDLE) throw invalid(`the bundle has 0 or more than ${MAX_BUNDLE} roots`); // prettier-ignore
  const certs = chain.map((d, i) => parse(d, i === 0 ? "the leaf" : `chain[${i}]`));
  const roots = bundle.map((d, i) => parse(d, `bundle[${i}]`));
  const leaf = certs[0] as Parsed;
  const id = checkLeaf(leaf, o);
  checkTime(leaf, now, "the leaf");
  // Walk up: each step finds the certificate that issued the current one, among the chain's
  // intermediates (each used once) or the bundle's roots, where the walk ends.
  let cur = leaf;
  let below = 0; // intermediates between `cur` and the leaf: pathLenConstraint counts them
  const left = certs.slice(1);
  const window = { from: leaf.p.notBefore.getTime(), until: leaf.p.notAfter.getTime() };
  for (let depth = 0; depth <= MAX_CHAIN; depth++) {
    // Names and signature only: OpenSSL's checkIssued also wants keyCertSign, which checkSigner names.
    const signedBy = (c: Parsed): boolean => cur.p.issuer === c.p.subject && verifies(cur.n, c.n);
    const root = roots.find(signedBy);
    const next = root ?? left.find(signedBy);
    if (!next) throw invalid(depth === 0 ? "the leaf is not signed by a root of the bundle" : `chain[${depth}] is not signed by a root of the bundle`); // prettier-ignore
    const what = root ? "the bundle's root" : `intermediate ${next.p.subject}`;
    checkSigner(next, what);
    checkTime(next, now, what);
    const pl = next.p.getExtension(x509.BasicConstraintsExtension)?.pathLength;
    if (pl !== undefined && below > pl) throw invalid(`${what} allows ${pl} intermediates below it, the chain has ${below}`); // prettier-ignore
    window.from = Math.max(window.from, next.p.notBefore.getTime());
    window.until = Math.min(window.until, next.p.notAfter.getTime());
    if (root) return { id, notAfter: leaf.p.notAfter, window, leafKey: leaf.n.publicKey };
    left.splice(left.indexOf(next), 1);
    cur = next;
    below++;
  }
  throw invalid("the chain is too long");
}

function verifies(c: NodeCert, by: NodeCert): boolean {
  try {
    return c.verify(by.publicKey);
  } catch {
    return false; // a key OpenSSL cannot use for this signature
  }
}
