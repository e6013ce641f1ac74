/**
 * Reads the TLS ClientHello at the start of a connection to learn the SNI
 * (for `serverNames` rules) without terminating TLS.
 *
 *   first bytes of a connection --parseClientHello--> incomplete | error(reason) | {sni?, alpn, length}
 *
 * Hostile-input safe and bounded: every length is checked against what
 * encloses it, the handshake may span several records (fragmentation is
 * legal and used to hide the SNI from naive parsers) but at most
 * `maxHelloBytes`; anything ambiguous is an error, and the caller resets
 * the connection (fail closed): two SNI extensions or two host names, a name
 * that is not a plain DNS name, records of another type mixed in.
 */

export const DEFAULT_MAX_HELLO_BYTES = 64 * 1024;
const MAX_RECORD = 16384;

export type ClientHelloResult =
  | { readonly kind: "incomplete" }
  | { readonly kind: "error"; readonly reason: string }
  | {
      readonly kind: "ok";
      /** Lower-case host name; undefined when the client sent none. */
      readonly sni: string | undefined;
      readonly alpn: readonly string[];
      /** Bytes of the records that carried the ClientHello. */
      readonly length: number;
    };

const fail = (reason: string): ClientHelloResult => ({ kind: "error", reason });

export function parseClientHello(buf: Buffer, maxHelloBytes = DEFAULT_MAX_HELLO_BYTES): ClientHelloResult {
  const parts: Buffer[] = [];
  let have = 0;
  let pos = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (buf.length - pos < 5) return { kind: "incomplete" };
    const type = buf[pos] as number;
    if (type !== 22)
      return fail(pos === 0 ? "not a TLS handshake record" : "another record type inside the ClientHello");
    if (buf[pos + 1] !== 3) return fail("unsupported record version");
    const len = buf.readUInt16BE(pos + 3);
    if (len === 0 || len > MAX_RECORD) return fail(`record length ${len}`);
    if (buf.length - pos - 5 < len) return { kind: "incomplete" };
    parts.push(buf.subarray(pos + 5, pos + 5 + len));
    have += len;
    pos += 5 + len;
    if (need < 0 && have >= 4) {
      const hs = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
      if (hs[0] !== 1) return fail("first handshake message is not a ClientHello");
      need = 4 + hs.readUIntBE(1, 3);
      if (need > maxHelloBytes) return fail("ClientHello too large");
    }
  }
  if (have !== need) return fail("bytes after the ClientHello in its records");
  const body = Buffer.concat(parts).subarray(4);
  const r = parseBody(body);
  return typeof r === "string" ? fail(r) : { kind: "ok", ...r, length: pos };
}

/** A cursor that never reads past its end. */
class Reader {
  constructor(
    private readonly b: Buffer,
    public pos = 0,
    private readonly end = b.length,
  ) {}
  left(): number {
    return this.end - this.pos;
  }
  u8(): number | undefined {
    return this.left() >= 1 ? (this.b[this.pos++] as number) : undefined;
  }
  u16(): number | undefined {
    if (this.left() < 2) return undefined;
    this.pos += 2;
    return this.b.readUInt16BE(this.pos - 2);
  }
  bytes(n: number): Buffer | undefined {
    if (n < 0 || this.left() < n) return undefined;
    this.pos += n;
    return this.b.subarray(this.pos - n, this.pos);
  }
  /** A sub-reader over the next n bytes. */
  sub(n: number): Reader | undefined {
    if (n < 0 || this.left() < n) return undefined;
    const r = new Reader(this.b, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
}

function parseBody(body: Buffer): { sni: string | undefined; alpn: string[] } | string {
  const r = new Reader(body);
  const version = r.u16();
  if (version === undefined || version >> 8 !== 3) return "unsupported ClientHello version";
  if (!r.bytes(32)) return "truncated random";
  const sid = r.u8();
  if (sid === undefined || sid > 32 || !r.bytes(sid)) return "bad session id";
  const cs = r.u16();
  if (cs === undefined || cs < 2 || cs % 2 !== 0 || !r.bytes(cs)) return "bad cipher suites";
  const cm = r.u8();
  if (cm === undefined || cm < 1 || !r.bytes(cm)) return "bad compression methods";
  if (r.left() === 0) return { sni: undefined, alpn: [] };
  const extLen = r.u16();
  if (extLen === undefined || extLen !== r.left()) return "extensions length does not match the ClientHello";
  const seen = new Set<number>();
  let sni: string | undefined;
  let alpn: string[] = [];
  while (r.left() > 0) {
    const type = r.u16();
    const len = r.u16();
    const ext = len === undefined ? undefined : r.sub(len);
    if (type === undefined || !ext) return "truncated extension";
    if (seen.has(type)) return `extension ${type} appears twice`;
    seen.add(type);
    if (type === 0) {
      const s = parseSni(ext);
      if (typeof s !== "string" || s.startsWith("!"))
        return typeof s === "string" ? s.slice(1) : "bad server_name";
      sni = s;
    } else if (type === 16) {
      const a = parseAlpn(ext);
      if (typeof a === "string") return a;
      alpn = a;
    }
  }
  return { sni, alpn };
}

/** The host name, or `!reason`. */
function parseSni(r: Reader): string {
  const listLen = r.u16();
  if (listLen === undefined || listLen !== r.left() || listLen === 0) return "!bad server_name list length";
  let name: string | undefined;
  while (r.left() > 0) {
    const type = r.u8();
    const len = r.u16();
    const b = len === undefined ? undefined : r.bytes(len);
    if (type === undefined || !b) return "!truncated server_name entry";
    if (type !== 0) return "!unknown server_name type";
    if (name !== undefined) return "!more than one host_name";
    const s = b.toString("latin1");
    if (!validHostName(s)) return "!server name is not a DNS host name";
    name = s.replace(/[A-Z]+/g, (m) => m.toLowerCase());
  }
  return name ?? "!empty server_name list";
}

/** RFC 6066: ASCII, no trailing dot; labels of letters, digits, '-' and '_'. */
function validHostName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split(".").every((l) => l.length >= 1 && l.length <= 63 && /^[A-Za-z0-9_-]+$/.test(l));
}

function parseAlpn(r: Reader): string[] | string {
  const listLen = r.u16();
  if (listLen === undefined || listLen !== r.left() || listLen === 0) return "bad ALPN list length";
  const out: string[] = [];
  while (r.left() > 0) {
    const len = r.u8();
    const b = len === undefined ? undefined : r.bytes(len);
    if (!len || !b) return "bad ALPN protocol";
    out.push(b.toString("latin1"));
  }
  return out;
}
