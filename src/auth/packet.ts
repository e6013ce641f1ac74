/**
 * The addresses of a queued packet (from its IP header). Hostile input: bounded reads only,
 * undefined for anything that is not a whole IPv4 or IPv6 header.
 */
export function packetAddresses(b: Buffer): { src: string; dst: string; family: 4 | 6 } | undefined {
  if (b.length < 1) return undefined;
  const v = (b[0] ?? 0) >> 4;
  if (v === 4 && b.length >= 20) {
    const a = (o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
    return { src: a(12), dst: a(16), family: 4 };
  }
  if (v === 6 && b.length >= 40) {
    const a = (o: number): string => {
      const g: string[] = [];
      for (let i = 0; i < 8; i++) g.push(b.readUInt16BE(o + 2 * i).toString(16));
      return compress(g);
    };
    return { src: a(8), dst: a(24), family: 6 };
  }
  return undefined;
}

/** RFC 5952 text of eight hex groups (the longest run of two or more zero groups as ::). */
function compress(g: string[]): string {
  let best = -1;
  let len = 0;
  for (let i = 0; i < 8;) {
    if (g[i] !== "0") {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === "0") j++;
    if (j - i > len && j - i >= 2) [best, len] = [i, j - i];
    i = j;
  }
  if (best < 0) return g.join(":");
  return `${g.slice(0, best).join(":")}::${g.slice(best + len).join(":")}`;
}
