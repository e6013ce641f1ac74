/**
 * IP prefixes for `cidr:` labels, CIDR peers and the ipcache.
 *
 *   "10.0.0.0/8" --parsePrefix--> {family: 4, addr: 0x0a000000n, bits: 8}
 *   containsPrefix(outer, inner), containsAddr(prefix, "10.1.2.3")
 *
 * Parsing is ipaddr.js (a well-kept parser of every IPv4/IPv6 text form);
 * containment is two lines of bigint arithmetic on top.
 */
import ipaddr from "ipaddr.js";

export interface Prefix {
  readonly family: 4 | 6;
  /** Network address with host bits cleared. */
  readonly addr: bigint;
  readonly bits: number;
}

export function familyWidth(f: 4 | 6): number {
  return f === 4 ? 32 : 128;
}

/** Parses an address to {family, value}; undefined if it is not an IP address. */
export function parseAddr(s: string): { family: 4 | 6; value: bigint } | undefined {
  if (!ipaddr.isValid(s)) return undefined;
  // ipaddr.isValid accepts shorthand like "10.1" (classful forms); insist on the full form.
  if (s.includes(".") && !s.includes(":") && !ipaddr.IPv4.isValidFourPartDecimal(s)) return undefined;
  const a = ipaddr.parse(s);
  const bytes = a.toByteArray();
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return { family: a.kind() === "ipv4" ? 4 : 6, value: v };
}

/**
 * Parses `addr/bits`, or a bare address when `allowBare` (as /32 or /128).
 * Host bits are cleared, as Go's net.ParseCIDR does. Returns undefined when
 * the text is not a prefix.
 */
export function parsePrefix(s: string, allowBare = false): Prefix | undefined {
  const slash = s.indexOf("/");
  const addrText = slash >= 0 ? s.slice(0, slash) : s;
  const a = parseAddr(addrText);
  if (!a) return undefined;
  const width = familyWidth(a.family);
  let bits = width;
  if (slash >= 0) {
    const b = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(b)) return undefined;
    bits = Number(b);
    if (bits > width) return undefined;
  } else if (!allowBare) {
    return undefined;
  }
  return { family: a.family, addr: a.value & mask(a.family, bits), bits };
}

export function mask(family: 4 | 6, bits: number): bigint {
  const width = BigInt(familyWidth(family));
  if (bits === 0) return 0n;
  return ((1n << BigInt(bits)) - 1n) << (width - BigInt(bits));
}

export function containsPrefix(outer: Prefix, inner: Prefix): boolean {
  return (
    outer.family === inner.family &&
    outer.bits <= inner.bits &&
    (inner.addr & mask(outer.family, outer.bits)) === outer.addr
  );
}

export function containsAddr(p: Prefix, addr: string): boolean {
  const a = parseAddr(addr);
  return a !== undefined && a.family === p.family && (a.value & mask(p.family, p.bits)) === p.addr;
}

export function prefixString(p: Prefix): string {
  return `${addrString(p.family, p.addr)}/${p.bits}`;
}

export function addrString(family: 4 | 6, v: bigint): string {
  const n = family === 4 ? 4 : 16;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

/** The host prefix (/32 or /128) of an address; undefined if not an address. */
export function hostPrefix(addr: string): Prefix | undefined {
  return parsePrefix(addr, true) && parsePrefix(addr.split("/")[0] ?? "", true);
}
