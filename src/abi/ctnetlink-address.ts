/**
 * IP addresses as conntrack holds them (4 or 16 bytes) and as Node prints
 * them. Pure. Parsing is strict (Node's isIPv4/isIPv6 first); printing follows
 * inet_ntop so that an address read from the kernel compares equal to the
 * same address read from a socket.
 */
import { isIPv4, isIPv6 } from "node:net";

/**
 * The bytes of an address and its family. IPv4-mapped IPv6 (`::ffff:a.b.c.d`,
 * what a dual-stack socket reports for IPv4 peers) becomes IPv4, because that
 * is how conntrack keyed it. A zone (`%eth0`) is dropped: conntrack has none.
 */
export function addressBytes(address: string): { family: 4 | 6; bytes: Uint8Array } | undefined {
  const pct = address.indexOf("%");
  const s = pct >= 0 ? address.slice(0, pct) : address;
  if (isIPv4(s)) return { family: 4, bytes: Uint8Array.from(s.split(".").map(Number)) };
  if (!isIPv6(s)) return undefined;
  const b = ipv6Bytes(s);
  if (!b) return undefined;
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? { family: 4, bytes: b.slice(12) } : { family: 6, bytes: b };
}

/** The 16 bytes of an IPv6 address that already passed isIPv6 (no zone). */
function ipv6Bytes(s: string): Uint8Array | undefined {
  let text = s;
  const lastColon = s.lastIndexOf(":");
  const tail = s.slice(lastColon + 1);
  if (tail.includes(".")) {
    if (!isIPv4(tail)) return undefined;
    const [a = 0, b = 0, c = 0, d = 0] = tail.split(".").map(Number);
    text = `${s.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (h: string | undefined): string[] => (h === undefined || h === "" ? [] : h.split(":"));
  const head = groups(halves[0]);
  const rest = groups(halves[1]);
  const fill = 8 - head.length - rest.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const words = [...head, ...Array<string>(halves.length === 1 ? 0 : fill).fill("0"), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const w = words[i] ?? "";
    if (!/^[0-9a-fA-F]{1,4}$/.test(w)) return undefined;
    const n = parseInt(w, 16);
    out[2 * i] = n >> 8;
    out[2 * i + 1] = n & 0xff;
  }
  return out;
}

/**
 * Text form of 4 or 16 address bytes, as Node prints socket addresses
 * (inet_ntop: lower case, the longest run of two or more zero groups as `::`,
 * `::ffff:a.b.c.d` and `::a.b.c.d` with a dotted tail).
 */
export function addressText(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  const w: number[] = [];
  for (let i = 0; i < 16; i += 2) w.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let base = -1;
  let len = 0;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > len) [base, len] = [i, j - i];
    i = j;
  }
  if (len < 2) base = -1;
  if (base === 0 && (len === 6 || (len === 5 && w[5] === 0xffff)))
    return `::${len === 5 ? "ffff:" : ""}${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  if (base < 0) return w.map((x) => x.toString(16)).join(":");
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(":");
  return `${hex(w.slice(0, base))}::${hex(w.slice(base + len))}`;
}
