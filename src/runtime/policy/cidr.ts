/**
 * CIDRs of connect-hook selectors (DAddr, NotDAddr, SAddr, NotSAddr): IPv4
 * `a.b.c.d[/n]` and IPv6 `x:x::x[/n]`, read into 32-bit words in host order
 * for the connect programs. Pure.
 */
import type { Cidr } from "./types.js";

/** `a.b.c.d/n` or an IPv6 CIDR (or a bare address) into a Cidr; undefined when it is not one. */
export function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text);
  if (!m) return undefined;
  const addr = m[1] ?? "";
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(addr);
  if (v4) {
    const bytes = v4.slice(1, 5).map(Number);
    const prefix = m[2] === undefined ? 32 : Number(m[2]);
    if (bytes.some((b) => b > 255) || prefix > 32 || (m[2] ?? "0").length > 2) return undefined;
    const word =
      (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0;
    return { family: 4, words: [word], prefix };
  }
  const words = parseIpv6(addr);
  const prefix = m[2] === undefined ? 128 : Number(m[2]);
  if (!words || prefix > 128) return undefined;
  return { family: 6, words, prefix };
}

function parseIpv6(s: string): number[] | undefined {
  if (!/^[0-9a-fA-F:]+$/.test(s) || s.length > 39) return undefined;
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const part = (x: string | undefined): string[] => (x ? x.split(":") : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 ? fill !== 0 : fill < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? fill : 0).fill("0"), ...tail];
  if (groups.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const n = groups.map((g) => parseInt(g, 16));
  return [0, 1, 2, 3].map((i) => (((n[2 * i] ?? 0) << 16) | (n[2 * i + 1] ?? 0)) >>> 0);
}
