/**
 * The few fields of a certificate an X.509-SVID leaf is judged on (validate.ts), read straight
 * from its DER: validity, whether the subject is empty, and the extensions SAN, basic
 * constraints, key usage and extended key usage, each with its critical flag.
 *
 *   DER --readCertFields--> {notBefore, notAfter, subjectEmpty, san, basicConstraints, keyUsage, extKeyUsage}
 *
 * Why not @peculiar/x509 as for the signing certificates: it decodes every extension of the
 * certificate through a generic ASN.1 schema (~3 ms of CPU a leaf on a busy node, 5x the OpenSSL
 * parse and signature check together), and a leaf is parsed on the first packet's path of every
 * new pair. Hostile input: every length is checked against its parent, only definite DER lengths,
 * a repeated extension or any malformed field throws (the caller refuses the certificate).
 */

export interface CertFields {
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectEmpty: boolean;
  readonly san?: { readonly critical: boolean; readonly uris: readonly string[] };
  readonly basicConstraints?: { readonly critical: boolean; readonly ca: boolean };
  readonly keyUsage?: {
    readonly critical: boolean;
    readonly digitalSignature: boolean;
    readonly keyCertSign: boolean;
    readonly cRLSign: boolean;
  };
  /** Dotted OIDs. */
  readonly extKeyUsage?: readonly string[];
}

interface Tlv {
  readonly tag: number;
  /** Content: [start, end). */
  readonly start: number;
  readonly end: number;
}

const bad = (why: string): Error => new Error(why);

/** The element at `at`, inside `[.., limit)`. */
function tlv(b: Uint8Array, at: number, limit: number): Tlv {
  if (at + 2 > limit) throw bad(`truncated element at byte ${at}`);
  const tag = b[at] as number;
  if ((tag & 0x1f) === 0x1f) throw bad(`a multi-byte tag at byte ${at}`);
  let len = b[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 3) throw bad(`a length of ${n === 0 ? "indefinite" : `${n} bytes`} at byte ${at}`);
    if (start + n > limit) throw bad(`truncated length at byte ${at}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (b[start + i] as number);
    start += n;
  }
  if (start + len > limit) throw bad(`element at byte ${at} runs past its container`);
  return { tag, start, end: start + len };
}

/** The elements inside `parent`, in order. */
function children(b: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.start; at < parent.end; at = (out.at(-1) as Tlv).end) out.push(tlv(b, at, parent.end));
  return out;
}

function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (t?.tag !== tag) throw bad(`${what} is missing or not of tag 0x${tag.toString(16)}`);
  return t;
}

function oid(b: Uint8Array, t: Tlv): string {
  if (t.end === t.start) throw bad("an empty OID");
  const first = b[t.start] as number;
  // The first subidentifier packs two arcs (40 * x + y); one of 128 or more (arc 2, y >= 48)
  // takes several bytes, which the split below would misread. No certificate we judge has one.
  if (first & 0x80) throw bad("an OID whose first subidentifier takes more than one byte");
  const out = [Math.min(2, Math.floor(first / 40)), first - 40 * Math.min(2, Math.floor(first / 40))];
  let v = 0;
  for (let i = t.start + 1; i < t.end; i++) {
    const x = b[i] as number;
    v = v * 128 + (x & 0x7f);
    if (v > Number.MAX_SAFE_INTEGER / 128) throw bad("an OID arc too large");
    if (!(x & 0x80)) {
      out.push(v);
      v = 0;
    } else if (i === t.end - 1) throw bad("a truncated OID");
  }
  return out.join(".");
}

/** UTCTime YYMMDDHHMMSSZ or GeneralizedTime YYYYMMDDHHMMSSZ, as RFC 5280 4.1.2.5 requires them. */
function time(b: Uint8Array, t: Tlv | undefined, what: string): Date {
  const s = t ? Buffer.from(b.subarray(t.start, t.end)).toString("latin1") : "";
  const m =
    t?.tag === 0x17
      ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
      : t?.tag === 0x18
        ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
        : null;
  if (!m) throw bad(`${what} is not a UTCTime or GeneralizedTime in UTC`);
  const [y, mo, d, h, mi, se] = m.slice(1).map(Number) as [number, number, number, number, number, number];
  const year = t?.tag === 0x17 ? (y >= 50 ? 1900 + y : 2000 + y) : y;
  return new Date(Date.UTC(year, mo - 1, d, h, mi, se));
}

const bool = (b: Uint8Array, t: Tlv): boolean => {
  if (t.tag !== 0x01 || t.end - t.start !== 1) throw bad("a malformed BOOLEAN");
  return b[t.start] !== 0;
};

const SAN = "2.5.29.17";
const BASIC_CONSTRAINTS = "2.5.29.19";
const KEY_USAGE = "2.5.29.15";
const EXT_KEY_USAGE = "2.5.29.37";

/** Reads the fields of one DER certificate; throws on malformed DER. */
export function readCertFields(b: Uint8Array): CertFields {
  const cert = expect(tlv(b, 0, b.length), 0x30, "the certificate");
  if (cert.end !== b.length) throw bad("bytes after the certificate");
  const tbs = children(b, expect(children(b, cert)[0], 0x30, "tbsCertificate"));
  let i = tbs[0]?.tag === 0xa0 ? 1 : 0; // version
  expect(tbs[i++], 0x02, "serialNumber");
  expect(tbs[i++], 0x30, "signature");
  expect(tbs[i++], 0x30, "issuer");
  const validity = children(b, expect(tbs[i++], 0x30, "validity"));
  const subject = expect(tbs[i++], 0x30, "subject");
  expect(tbs[i++], 0x30, "subjectPublicKeyInfo");
  const ext = tbs.slice(i).find((t) => t.tag === 0xa3);
  const out: { -readonly [K in keyof CertFields]: CertFields[K] } = {
    notBefore: time(b, validity[0], "notBefore"),
    notAfter: time(b, validity[1], "notAfter"),
    subjectEmpty: subject.end === subject.start,
  };
  const seen = new Set<string>();
  for (const e of ext ? children(b, expect(children(b, ext)[0], 0x30, "extensions")) : []) {
    const parts = children(b, expect(e, 0x30, "an extension"));
    const [id, second, third] = parts;
    if (parts.length !== (second?.tag === 0x01 ? 3 : 2)) throw bad("an extension of other than {extnID, critical?, extnValue}"); // prettier-ignore
    const name = oid(b, expect(id, 0x06, "an extension's OID"));
    if (seen.has(name)) throw bad(`extension ${name} appears twice`);
    seen.add(name);
    const critical = second?.tag === 0x01 ? bool(b, second) : false;
    const value = expect(second?.tag === 0x01 ? third : second, 0x04, `extension ${name}'s value`);
    const inner = (): Tlv => {
      const t = tlv(b, value.start, value.end);
      if (t.end !== value.end) throw bad(`bytes after extension ${name}'s value`);
      return t;
    };
    if (name === SAN) {
      const uris = children(b, expect(inner(), 0x30, "subjectAltName"))
        .filter((g) => g.tag === 0x86) // uniformResourceIdentifier [6] IA5String
        .map((g) => {
          const raw = b.subarray(g.start, g.end);
          if (raw.some((c) => c > 0x7e || c < 0x20)) throw bad("a URI SAN that is not printable IA5");
          return Buffer.from(raw).toString("latin1");
        });
      out.san = { critical, uris };
    } else if (name === BASIC_CONSTRAINTS) {
      const [ca] = children(b, expect(inner(), 0x30, "basicConstraints"));
      out.basicConstraints = { critical, ca: ca?.tag === 0x01 ? bool(b, ca) : false };
    } else if (name === KEY_USAGE) {
      const bits = expect(inner(), 0x03, "keyUsage");
      const unused = b[bits.start] ?? 8;
      if (unused > 7 || (bits.end - bits.start === 1 && unused !== 0))
        throw bad("a malformed keyUsage BIT STRING");
      // DER leaves the unused bits zero; a reader that masks them and one that does not would see
      // different usages in the same bytes (keyCertSign and cRLSign can sit there), so refuse.
      if (((b[bits.end - 1] as number) & ((1 << unused) - 1)) !== 0)
        throw bad("a keyUsage BIT STRING with unused bits set (not DER)");
      const first = bits.end - bits.start > 1 ? (b[bits.start + 1] as number) : 0;
      // Bit 0 is the first byte's high bit: digitalSignature (0), keyCertSign (5), cRLSign (6).
      out.keyUsage = { critical, digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0, cRLSign: (first & 0x02) !== 0 }; // prettier-ignore
    } else if (name === EXT_KEY_USAGE) {
      out.extKeyUsage = children(b, expect(inner(), 0x30, "extKeyUsage")).map((o) => oid(b, expect(o, 0x06, "a key purpose"))); // prettier-ignore
    }
  }
  return out;
}
