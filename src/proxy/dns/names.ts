/**
 * Names and addresses as the DNS proxy presents them (message.ts reads the messages): a label in
 * RFC 4343 presentation, a question's name, an address's text. Pure functions of the bytes; the
 * small memos below only return a string made from the same bytes before.
 */

/** The longest name on the wire (RFC 1035 2.3.4), the root byte included. */
export const MAX_NAME = 255;

/**
 * The last question name presented and its wire bytes: most queries ask what the one before asked
 * (a client's A and AAAA, many clients of one service), and the same bytes always present as the
 * same name. Reusing the string also lets the maps keyed by it (verdicts, held answers) find it
 * by identity, its hash already computed, instead of joining, hashing and comparing a new string.
 */
const lastWire = Buffer.alloc(MAX_NAME);
let lastWireLen = -1;
let lastName = ".";

/** The presentation of the checked name in buf[12, end): labels joined by dots, a trailing dot. */
export function questionName(buf: Buffer, end: number): string {
  const n = end - 12;
  if (n === lastWireLen) {
    let i = 0;
    while (i < n && buf[12 + i] === lastWire[i]) i++;
    if (i === n) return lastName;
  }
  let name = "";
  for (let pos = 12; buf[pos] !== 0;) {
    const len = buf[pos] as number;
    name += presentLabel(buf, pos + 1, pos + 1 + len) + ".";
    pos += 1 + len;
  }
  if (name === "") name = ".";
  buf.copy(lastWire, 0, 12, end);
  lastWireLen = n;
  lastName = name;
  return name;
}

/** RFC 4343 presentation of a label, ASCII lower-cased; anything unusual escaped. */
export function presentLabel(buf: Buffer, start: number, end: number): string {
  // Almost every label is lowercase letters, digits, '-' and '_': one flat string read at once (no
  // view, no string built a character at a time). Any other byte: the character-wise form below.
  let i = start;
  while (i < end && isPlain(buf[i] as number)) i++;
  if (i === end) return buf.toString("latin1", start, end);
  let s = "";
  for (let j = start; j < end; j++) {
    const c = buf[j] as number;
    if (isPlain(c)) s += String.fromCharCode(c);
    else if (c >= 0x41 && c <= 0x5a) s += String.fromCharCode(c + 32);
    else s += "\\" + String(c).padStart(3, "0");
  }
  return s;
}

const isPlain = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;

/**
 * IPv4 addresses' text by their 32 bits: an answer names the same few addresses again and again,
 * and the same string each time is found by identity in the maps keyed by it (held answers).
 */
const v4Text = new Map<number, string>();

export function ipv4Text(a: number): string {
  let t = v4Text.get(a);
  if (t === undefined) {
    if (v4Text.size >= 4096) v4Text.clear();
    v4Text.set(a, (t = `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`));
  }
  return t;
}
