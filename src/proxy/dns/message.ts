/**
 * DNS messages as the proxy sees them: a strict reader of queries, replies
 * built from a query (REFUSED, SERVFAIL, FORMERR, NOTIMP), and the
 * addresses an answer gives for the query name.
 *
 *   query bytes --parseQuery--> {id, name, qtype, question bytes} | formerr | drop
 *   query, rcode --buildReply--> reply bytes (same id, question copied)
 *   answer bytes --readAnswer--> {rcode, ips, ttl, truncated} | error
 *
 * The question is read by hand (one question, no compression, label
 * lengths checked against the end) so that the name we judge is exactly the
 * name the resolver will look up; the whole message is then also decoded by
 * dns-packet, inside try/catch, so a malformed record anywhere is a FORMERR
 * and never an exception escaping into the proxy.
 */
import dnsPacket from "dns-packet";
import { ipv4Text, MAX_NAME, presentLabel, questionName } from "./names.js";

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export const RCODE_NAMES = ["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"];

export interface Query {
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  /** Lower-case, trailing dot; bytes outside `[-a-z0-9_]` escaped as `\DDD` (so they match no pattern). */
  readonly name: string;
  readonly qtype: number;
  /** The raw question section (name, type, class), copied into replies. */
  readonly question: Buffer;
  /** EDNS UDP payload size the client advertised (512 without OPT). */
  readonly udpSize: number;
}

export type QueryResult =
  | { readonly kind: "ok"; readonly query: Query }
  /** Answer FORMERR (or NOTIMP) with what could be read. */
  | {
      readonly kind: "reply";
      readonly rcode: number;
      readonly reason: string;
      readonly partial: PartialQuery;
    }
  /** Not worth an answer (too short to carry an id, or not a query at all). */
  | { readonly kind: "drop"; readonly reason: string };

export interface PartialQuery {
  readonly id: number;
  readonly opcode: number;
  readonly rd: boolean;
  readonly question?: Buffer;
}

export function parseQuery(buf: Buffer): QueryResult {
  if (buf.length < 12) return { kind: "drop", reason: "shorter than a DNS header" };
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  if (flags & 0x8000) return { kind: "drop", reason: "a response, not a query" };
  const opcode = (flags >> 11) & 0xf;
  const rd = (flags & 0x0100) !== 0;
  // The partial query is built on the error paths only.
  const formerr = (reason: string, question?: Buffer): QueryResult => ({
    kind: "reply",
    rcode: RCODE.FORMERR,
    reason,
    partial: question ? { id, opcode, rd, question } : { id, opcode, rd },
  });
  const qdcount = buf.readUInt16BE(4);
  if (qdcount !== 1) return formerr(`qdcount ${qdcount} (exactly one question is accepted)`);
  // The name's labels are checked first, then presented (or taken from the last query's: same bytes).
  let pos = 12;
  let total = 1;
  for (;;) {
    if (pos >= buf.length) return formerr("question name runs past the end");
    const len = buf[pos] as number;
    if (len === 0) {
      pos++;
      break;
    }
    if (len & 0xc0) return formerr("compression pointer or reserved label type in the question");
    total += len + 1;
    if (total > MAX_NAME) return formerr("question name longer than 255 bytes");
    if (pos + 1 + len > buf.length) return formerr("question label runs past the end");
    pos += 1 + len;
  }
  if (pos + 4 > buf.length) return formerr("question type/class missing");
  const qtype = buf.readUInt16BE(pos);
  const question = Buffer.from(buf.subarray(12, pos + 4));
  if (opcode !== 0)
    return { kind: "reply", rcode: RCODE.NOTIMP, reason: `opcode ${opcode}`, partial: { id, opcode, rd, question } }; // prettier-ignore
  let udpSize = 512;
  // A question and nothing else (no records counted, no byte after it): the
  // hand-read question above is the whole message, there is nothing left to
  // decode. Anything else is decoded whole.
  const bare = pos + 4 === buf.length && buf.readUInt32BE(6) === 0 && buf.readUInt16BE(10) === 0;
  // A question and one plain EDNS OPT record (what most stub resolvers send): read here too.
  const opt = bare ? undefined : plainOpt(buf, pos + 4);
  if (opt !== undefined) udpSize = Math.min(4096, Math.max(512, opt));
  else if (!bare)
    try {
      const p = dnsPacket.decode(buf);
      if (dnsPacket.decode.bytes !== buf.length) return formerr("trailing bytes after the message", question);
      for (const a of p.additionals ?? []) {
        if (a.type === "OPT") udpSize = Math.min(4096, Math.max(512, a.udpPayloadSize ?? 512));
      }
    } catch (e) {
      return formerr(`malformed message: ${e instanceof Error ? e.message : "undecodable"}`, question);
    }
  return { kind: "ok", query: { id, opcode, rd, name: questionName(buf, pos), qtype, question, udpSize } };
}

/**
 * The UDP payload size of a message whose only record after the question (at `at`) is an OPT
 * record: root owner, type 41, options walked to exactly the end of the message, none of the
 * kinds dns-packet reads further (client subnet, keep-alive, key tag), so that what is read here
 * is what dns-packet would accept. undefined: anything else (decoded whole).
 */
function plainOpt(buf: Buffer, at: number): number | undefined {
  if (buf.readUInt32BE(6) !== 0 || buf.readUInt16BE(10) !== 1 || at + 11 > buf.length) return undefined;
  if (buf[at] !== 0 || buf.readUInt16BE(at + 1) !== 41) return undefined;
  const end = at + 11 + buf.readUInt16BE(at + 9);
  if (end !== buf.length) return undefined;
  for (let o = at + 11; o < end;) {
    if (o + 4 > end) return undefined;
    const code = buf.readUInt16BE(o);
    if (code === 8 || code === 11 || code === 14) return undefined;
    o += 4 + buf.readUInt16BE(o + 2);
    if (o > end) return undefined;
  }
  return buf.readUInt16BE(at + 3);
}

/** A reply carrying only the header and the question of `q`. */
export function buildReply(q: PartialQuery, rcode: number): Buffer {
  const question = q.question ?? Buffer.alloc(0);
  const out = Buffer.alloc(12 + question.length);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(0x8000 | ((q.opcode & 0xf) << 11) | (q.rd ? 0x0100 : 0) | 0x0080 | (rcode & 0xf), 2);
  out.writeUInt16BE(q.question ? 1 : 0, 4);
  question.copy(out, 12);
  return out;
}

export type AnswerResult =
  | {
      readonly ok: true;
      readonly rcode: number;
      readonly truncated: boolean;
      /** A/AAAA addresses for the query name (following CNAMEs in the answer section). */
      readonly ips: readonly string[];
      /** Smallest TTL of the records used; 0 without addresses. */
      readonly ttl: number;
      /** CNAME targets followed from the query name, in the order followed (Hubble's `cnames`). */
      readonly cnames: readonly string[];
      /** Types of the answer section's records, distinct, in order (Hubble's `rrtypes`). */
      readonly rrtypes: readonly string[];
    }
  | { readonly ok: false; readonly reason: string };

/** Checks an upstream answer against the query and reads the addresses it gives. */
export function readAnswer(buf: Buffer, q: Query): AnswerResult {
  if (buf.length < 12) return { ok: false, reason: "answer shorter than a DNS header" };
  if (buf.readUInt16BE(0) !== q.id) return { ok: false, reason: "answer id differs" };
  const flags = buf.readUInt16BE(2);
  if (!(flags & 0x8000)) return { ok: false, reason: "not a response" };
  const qEnd = 12 + q.question.length;
  if (buf.readUInt16BE(4) !== 1 || buf.length < qEnd || !sameQuestion(buf, 12, q.question)) {
    return { ok: false, reason: "answer is for another question" };
  }
  // The records are walked by rdlength (dns-packet ignores rdlength for A/AAAA).
  const walked = walkRecords(buf, qEnd, q);
  if (typeof walked === "string") return { ok: false, reason: `malformed answer: ${walked}` };
  // A message of A, AAAA and CNAME records only is checked whole by the walk
  // (names, rdata, exact end); any other type's rdata is left to dns-packet.
  if (!walked.simple) {
    try {
      dnsPacket.decode(buf);
    } catch (e) {
      return { ok: false, reason: `malformed answer: ${e instanceof Error ? e.message : "undecodable"}` };
    }
  }
  const rrs = walked.records;
  // The names whose addresses count: the query's, and the CNAME targets followed from it (a set
  // only when the answer has a CNAME: most have none).
  const names = walked.cname ? new Set([q.name]) : undefined;
  const cnames: string[] = [];
  // Follow CNAMEs in any order, at most one step per record.
  for (let i = 0; names !== undefined && i < rrs.length; i++) {
    let grew = false;
    for (const r of rrs) {
      if (r.type === 5 && r.target !== undefined && names.has(r.name) && !names.has(r.target)) {
        names.add(r.target);
        cnames.push(r.target);
        grew = true;
      }
    }
    if (!grew) break;
  }
  const ips: string[] = [];
  let ttl = Infinity;
  for (const r of rrs) {
    if (r.ip !== undefined && (names === undefined ? r.name === q.name : names.has(r.name))) {
      ips.push(r.ip);
      ttl = Math.min(ttl, r.ttl);
    }
  }
  return {
    ok: true,
    rcode: flags & 0xf,
    truncated: (flags & 0x0200) !== 0,
    ips,
    ttl: ips.length ? ttl : 0,
    cnames,
    rrtypes: walked.types.map(qtypeName),
  };
}

interface AnswerRecord {
  readonly name: string;
  readonly type: number;
  readonly ttl: number;
  /** A (rdlength 4) / AAAA (rdlength 16). */
  readonly ip?: string;
  /** CNAME target. */
  readonly target?: string;
}

/**
 * The answer section's records, walked by rdlength; the authority and
 * additional sections must end exactly at the end of the message. `simple`:
 * every record is an A, AAAA or CNAME this walk checked completely.
 */
function walkRecords(
  buf: Buffer,
  start: number,
  q: Query,
): { records: AnswerRecord[]; types: number[]; simple: boolean; cname: boolean } | string {
  const counts = [buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)];
  const out: AnswerRecord[] = [];
  const types: number[] = [];
  let simple = true;
  let pos = start;
  for (let section = 0; section < 3; section++) {
    for (let i = 0; i < (counts[section] as number); i++) {
      const n = readName(buf, pos, q);
      if (typeof n === "string") return n;
      pos = n.next;
      if (pos + 10 > buf.length) return "record header runs past the end";
      const type = buf.readUInt16BE(pos);
      const ttl = buf.readUInt32BE(pos + 4);
      const rdlength = buf.readUInt16BE(pos + 8);
      const rd = pos + 10;
      pos = rd + rdlength;
      if (pos > buf.length) return "rdata runs past the end";
      if (section !== 0) {
        // Only well-sized addresses are fully checked here; anything else also goes to dns-packet.
        if (!((type === 1 && rdlength === 4) || (type === 28 && rdlength === 16))) simple = false;
        continue;
      }
      if (!types.includes(type)) types.push(type);
      if (type !== 1 && type !== 28 && type !== 5) simple = false;
      if (type === 1 || type === 28) {
        if (rdlength !== (type === 1 ? 4 : 16)) return `address record with rdlength ${rdlength}`;
        const ip = type === 1 ? ipv4Text(buf.readUInt32BE(rd)) : ipv6(buf.subarray(rd, pos));
        out.push({ name: n.name, type, ttl, ip });
      } else if (type === 5) {
        const t = readName(buf, rd, q);
        if (typeof t === "string") return t;
        if (t.next !== pos) return "CNAME rdata length differs from its name";
        out.push({ name: n.name, type, ttl, target: t.name });
      }
    }
  }
  return pos === buf.length ? { records: out, types, simple, cname: types.includes(5) } : "trailing bytes after the message"; // prettier-ignore
}

/**
 * A possibly compressed name: only backward pointers, at most 127 of them, 255 bytes. A pointer
 * to offset 12 is the question's name, which readAnswer checked equal to the query's (letters'
 * case aside): its presentation is `q.name`, not decoded again.
 */
function readName(buf: Buffer, start: number, q: Query): { name: string; next: number } | string {
  const labels: string[] = [];
  let pos = start;
  let next = -1;
  let total = 1;
  for (let hops = 0; ;) {
    if (pos >= buf.length) return "name runs past the end";
    const len = buf[pos] as number;
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) return "pointer runs past the end";
      const to = ((len & 0x3f) << 8) | (buf[pos + 1] as number);
      if (to >= pos || ++hops > 127) return "compression pointer loop or forward pointer";
      if (next < 0) next = pos + 2;
      if (to === 12) {
        total += q.question.length - 5; // the question's name: its wire length less the root byte counted
        if (total > MAX_NAME) return "name too long or past the end";
        const name = labels.length === 0 ? q.name : labels.join(".") + (q.name === "." ? "." : "." + q.name);
        return { name, next };
      }
      pos = to;
      continue;
    }
    if (len & 0xc0) return "reserved label type";
    total += len + 1;
    if (total > MAX_NAME || pos + 1 + len > buf.length) return "name too long or past the end";
    labels.push(presentLabel(buf, pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return { name: labels.length === 0 ? "." : labels.join(".") + ".", next };
}

function ipv6(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // Longest run of zero groups becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === "0") j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j === i ? i + 1 : j;
  }
  if (best < 0) return groups.join(":");
  return groups.slice(0, best).join(":") + "::" + groups.slice(best + bestLen).join(":");
}

/** The question in `buf` at `at` is `b` (the caller checked that b.length bytes are there). */
function sameQuestion(buf: Buffer, at: number, b: Buffer): boolean {
  const n = b.length;
  if (buf.readUInt32BE(at + n - 4) !== b.readUInt32BE(n - 4)) return false;
  // The name: type and class above are compared exactly.
  for (let i = 0; i < n - 4; i++) {
    const x = buf[at + i] as number;
    const y = b[i] as number;
    // Resolvers may echo the name's letters in another case (0x20 randomisation); nothing else may differ.
    if (x !== y && !(isLetter(x) && isLetter(y) && (x | 0x20) === (y | 0x20))) return false;
  }
  return true;
}

function isLetter(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

const QTYPES: Readonly<Record<number, string>> = {
  1: "A",
  2: "NS",
  5: "CNAME",
  6: "SOA",
  12: "PTR",
  15: "MX",
  16: "TXT",
  28: "AAAA",
  33: "SRV",
  65: "HTTPS",
  255: "ANY",
};

/** A query type's name in flows (`A`, `AAAA`, ...; `TYPE<n>` for the others). */
export function qtypeName(qtype: number): string {
  return QTYPES[qtype] ?? `TYPE${qtype}`;
}

/** Header and question of an answer too large for the client's buffer, TC set. */
export function truncatedCopy(q: Query, answer: Buffer): Buffer {
  const out = buildReply(q, answer.readUInt16BE(2) & 0xf);
  out.writeUInt16BE(answer.readUInt16BE(2) | 0x0200, 2);
  return out;
}
