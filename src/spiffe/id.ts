/**
 * SPIFFE IDs (SPIFFE-ID.md): `spiffe://<trust-domain>/<path>`, parsed strictly, and the IDs of
 * Membrane's identities.
 *
 *   identity 4242, trust domain "cluster.local" --identitySpiffeId--> spiffe://cluster.local/identity/4242
 *
 * Named as Cilium names them (`spiffe://<trust domain>/identity/<number>`, Cilium's default trust
 * domain being `spiffe.cilium`; ours defaults to `cluster.local`). Pure: no I/O.
 */
import { MembraneError } from "../errors.js";

export const DEFAULT_TRUST_DOMAIN = "cluster.local";
/** The SPIFFE ID spec's bound on a whole ID, in bytes. */
export const MAX_SPIFFE_ID_LENGTH = 2048;
const TRUST_DOMAIN_MAX = 255;
const TD_CHARS = /^[a-z0-9._-]+$/;
const SEGMENT_CHARS = /^[A-Za-z0-9._-]+$/;

export interface SpiffeId {
  readonly trustDomain: string;
  /** "" for a trust domain's own ID, else "/seg/seg". */
  readonly path: string;
  readonly uri: string;
}

/** Throws unless `td` is a trust domain name the spec allows (lower case letters, digits, `.-_`). */
export function checkTrustDomain(td: string, where = "--trust-domain"): string {
  if (td.length === 0 || td.length > TRUST_DOMAIN_MAX || !TD_CHARS.test(td)) {
    throw new MembraneError(
      "SPIFFE_ID_INVALID",
      `Cannot use ${where} ${JSON.stringify(td.slice(0, 80))}: a trust domain is 1 to ${TRUST_DOMAIN_MAX} characters of a-z, 0-9, '.', '-' and '_'`,
      { location: { path: where } },
    );
  }
  return td;
}

/** Parses a SPIFFE ID, refusing everything SPIFFE-ID.md forbids (port, user, query, fragment, %, empty or dot segments). */
export function parseSpiffeId(uri: string): SpiffeId {
  const bad = (why: string): MembraneError =>
    new MembraneError(
      "SPIFFE_ID_INVALID",
      `Cannot read SPIFFE ID ${JSON.stringify(uri.slice(0, 120))}: ${why}`,
    );
  if (uri.length > MAX_SPIFFE_ID_LENGTH) throw bad(`longer than ${MAX_SPIFFE_ID_LENGTH} bytes`);
  if (!uri.startsWith("spiffe://")) throw bad("the scheme is not spiffe:// (lower case)");
  const rest = uri.slice("spiffe://".length);
  const slash = rest.indexOf("/");
  const td = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? "" : rest.slice(slash);
  if (td.length === 0) throw bad("the trust domain is empty");
  if (!TD_CHARS.test(td) || td.length > TRUST_DOMAIN_MAX) {
    throw bad(
      "the trust domain has characters other than a-z, 0-9, '.', '-', '_' (no port, user or upper case)",
    );
  }
  if (path !== "") {
    const segs = path.slice(1).split("/");
    for (const s of segs) {
      if (s === "") throw bad("a path segment is empty (or the path ends with '/')");
      if (s === "." || s === "..") throw bad("a path segment is '.' or '..'");
      if (!SEGMENT_CHARS.test(s))
        throw bad("a path segment has characters other than A-Z, a-z, 0-9, '.', '-', '_'");
    }
  }
  return { trustDomain: td, path, uri };
}

/** The SPIFFE ID of a numeric identity: spiffe://<td>/identity/<n>. */
export function identitySpiffeId(trustDomain: string, identity: number): string {
  if (!Number.isSafeInteger(identity) || identity <= 0) {
    throw new MembraneError("SPIFFE_ID_INVALID", `Cannot name identity ${identity}: not a positive integer`);
  }
  return `spiffe://${trustDomain}/identity/${identity}`;
}

/** The identity number a SPIFFE ID of this trust domain names, or undefined if it names none. */
export function identityOfSpiffeId(id: SpiffeId, trustDomain: string): number | undefined {
  if (id.trustDomain !== trustDomain) return undefined;
  const m = /^\/identity\/([1-9][0-9]{0,15})$/.exec(id.path);
  const n = m?.[1] !== undefined ? Number(m[1]) : NaN;
  return Number.isSafeInteger(n) ? n : undefined;
}
